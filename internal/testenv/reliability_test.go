package testenv_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/netsonde/netsonde/internal/testenv"
)

const (
	tableBegin = "<!-- BEGIN reliability table: generated from docs/reliability/*.json by TestReliabilityTable; do not edit -->"
	tableEnd   = "<!-- END reliability table -->"
)

// docs/reliability.md's table is the JSON rows the scenario tests wrote
// (go test -reliability.update), rendered. Run this test with
// -reliability.update to rewrite the table; without it, it fails when the
// table and the rows disagree, so a figure in the doc is always a test's.
func TestReliabilityTable(t *testing.T) {
	dir, err := testenv.ReliabilityDir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var b strings.Builder
	b.WriteString(tableBegin + "\n\n")
	b.WriteString("| Scenario | Injected | Lost | Recovery | Test, kernel, date |\n|---|---|---|---|---|\n")
	cell := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r testenv.Reliability
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | `%s`, %s, %s |\n", cell(r.Scenario), cell(r.Injected), cell(r.Lost), cell(r.Recovery), r.Test, r.Kernel, r.Date)
	}
	b.WriteString("\n" + tableEnd)

	doc := filepath.Join(filepath.Dir(dir), "reliability.md")
	text, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	i, j := strings.Index(string(text), tableBegin), strings.Index(string(text), tableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no table markers", doc)
	}
	want := string(text[:i]) + b.String() + string(text[j+len(tableEnd):])
	if want == string(text) {
		return
	}
	if testenv.UpdateReliability() {
		if err := os.WriteFile(doc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's table is not the rows in %s (go test ./internal/testenv -run TestReliabilityTable -reliability.update)", doc, dir)
}
