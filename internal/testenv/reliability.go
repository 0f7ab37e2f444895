package testenv

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// updateReliability makes the tests that measure a failure scenario write
// their figures to docs/reliability/, from which TestReliabilityTable
// renders the table in docs/reliability.md. The figures are the tests'
// own measurements, never typed by hand.
var updateReliability = flag.Bool("reliability.update", false, "write this run's reliability figures to docs/reliability/*.json")

// Reliability is one row of the reliability table: a failure injected by a
// test, what it cost and how long the agent took to be whole again.
type Reliability struct {
	// Scenario names the row; it is also the fragment's file name.
	Scenario string `json:"scenario"`
	Injected string `json:"injected"`
	Lost     string `json:"lost"`
	Recovery string `json:"recovery"`
	// Figures are the raw measurements behind the sentences above.
	Figures map[string]any `json:"figures,omitempty"`
	Test    string         `json:"test"`
	Kernel  string         `json:"kernel"`
	Date    string         `json:"date"`
}

// RecordReliability logs the row and, under -reliability.update, writes it
// to docs/reliability/SCENARIO.json. A failed test records nothing: the
// table shows passing runs only.
func RecordReliability(t testing.TB, r Reliability) {
	t.Helper()
	r.Test = t.Name()
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		r.Kernel = strings.TrimSpace(string(out))
	}
	r.Date = time.Now().UTC().Format(time.DateOnly)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatalf("reliability row: %v", err)
	}
	t.Logf("reliability: %s", b)
	if !*updateReliability {
		return
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		dir, err := ReliabilityDir()
		if err != nil {
			t.Errorf("reliability row: %v", err)
			return
		}
		if err := os.WriteFile(filepath.Join(dir, r.Scenario+".json"), append(b, '\n'), 0o644); err != nil {
			t.Errorf("reliability row: %v", err)
		}
	})
}

// ReliabilityDir is docs/reliability in the module's source tree.
func ReliabilityDir() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	return filepath.Join(root, "docs", "reliability"), nil
}

// UpdateReliability reports whether -reliability.update was given.
func UpdateReliability() bool { return *updateReliability }
