// Package prometheus holds netsonde's alerting and recording rules
// (rules.yml) and their promtool unit tests; the Go tests here run promtool
// so that `make test` runs them.
package prometheus

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"

	"github.com/netsonde/netsonde/internal/testenv"
)

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	testenv.RequireCommand(t, "promtool")
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckRules(t *testing.T) {
	t.Log(promtool(t, "check", "rules", "rules.yml"))
}

func readRules(t *testing.T) rulesFile {
	t.Helper()
	b, err := os.ReadFile("rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("rules.yml: %v", err)
	}
	return rf
}

// withoutAnnotations returns rules.yml with every annotations block removed.
func withoutAnnotations(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.MapSlice
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, top := range doc {
		groups, _ := top.Value.([]any)
		for _, g := range groups {
			for _, gi := range g.(yaml.MapSlice) {
				rules, _ := gi.Value.([]any)
				for i, r := range rules {
					var kept yaml.MapSlice
					for _, kv := range r.(yaml.MapSlice) {
						if kv.Key != "annotations" {
							kept = append(kept, kv)
						}
					}
					rules[i] = kept
				}
			}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rules_test.yml states labels only: promtool compares annotations too, and
// repeating every description there would test copy and paste. It runs on
// rules.yml without annotations; annotations_test.yml renders the
// templates of the real file.
func TestPromtoolTestRules(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), withoutAnnotations(t), 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules_test.yml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(promtool(t, "test", "rules", filepath.Join(dir, "rules_test.yml")))
	t.Log(promtool(t, "test", "rules", "annotations_test.yml"))
}

type unitTests struct {
	Tests []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// Every alert has a summary, a description, a severity and a `for`, and is
// shown firing in rules_test.yml (whose cases sit beside near misses that
// promtool proves quiet: it compares the full list of firing alerts).
func TestEveryAlertIsCompleteAndTested(t *testing.T) {
	b, err := os.ReadFile("rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var ut unitTests
	if err := yaml.Unmarshal(b, &ut); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range ut.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	var alerts []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.For == "" {
				t.Errorf("%s: no `for`: it would page on a single evaluation", r.Alert)
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no case in rules_test.yml shows it firing", r.Alert)
			}
		}
	}
	sort.Strings(alerts)
	t.Logf("%d alerts: %s", len(alerts), strings.Join(alerts, " "))
}
