// Package prometheus holds netsonde's alerting and recording rules
// (rules.yml) and their promtool unit tests; the Go tests here run promtool
// so that `make test` runs them.
package prometheus

import (
	"os"
	"os/exec"
	"regexp"
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

// Plain promtool on the committed test file, as a user or CI would run it:
// no copy of the rules, nothing stripped (rules_test.yml states each firing
// alert's rendered annotations).
func TestPromtoolTestRules(t *testing.T) {
	t.Log(promtool(t, "test", "rules", "rules_test.yml"))
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

// runbookBase is where the rules' runbook_url points by default (the
// generator's -runbook-url changes it).
const runbookBase = "https://github.com/netsonde/netsonde/blob/main/docs/runbooks.md"

// runbookAnchors are the anchors GitHub makes of docs/runbooks.md's
// second-level headings: lower case, spaces to dashes, other punctuation
// dropped.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		h, ok := strings.CutPrefix(line, "## ")
		if !ok {
			continue
		}
		var a strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(h)) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				a.WriteRune(r)
			case r == ' ':
				a.WriteRune('-')
			}
		}
		anchors[a.String()] = true
	}
	return anchors
}

// Every link inside docs/runbooks.md to one of its own sections lands.
func TestRunbookLinks(t *testing.T) {
	b, err := os.ReadFile("../../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := runbookAnchors(t)
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(string(b), -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/runbooks.md links to #%s, which no heading makes", m[1])
		}
	}
}

// Every alert has a summary, a description, a runbook_url whose anchor
// exists in docs/runbooks.md, a severity and a `for`, and is
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
	anchors := runbookAnchors(t)
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
			if want := runbookBase + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !anchors[strings.ToLower(r.Alert)] {
				t.Errorf("%s: docs/runbooks.md has no section \"## %s\"", r.Alert, r.Alert)
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
