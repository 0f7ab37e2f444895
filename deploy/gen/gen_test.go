package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
)

const repoRoot = "../.."

// The committed copies are exactly what the generator renders: edit
// rules.yml or dashboard.go, run `make generate`, commit both.
func TestGeneratedUpToDate(t *testing.T) {
	files, err := render(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range sortedKeys(files) {
		got, err := os.ReadFile(filepath.Join(repoRoot, p))
		if err != nil {
			t.Errorf("%s: %v (run `make generate`)", p, err)
			continue
		}
		if !bytes.Equal(got, files[p]) {
			t.Errorf("%s differs from what deploy/gen renders; run `make generate` and commit it", p)
		}
	}
}

func readYAML(t *testing.T, b []byte) map[any]any {
	t.Helper()
	var v map[any]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("parse: %v\n%s", err, b)
	}
	return v
}

// The PrometheusRule's spec is rules.yml itself.
func TestPrometheusRuleSpecIsTheRulesFile(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(repoRoot, rulesPath))
	if err != nil {
		t.Fatal(err)
	}
	want := readYAML(t, rules)

	files, err := render(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	kust := readYAML(t, files[kustomizeRulePath])
	if kust["kind"] != "PrometheusRule" || kust["apiVersion"] != "monitoring.coreos.com/v1" {
		t.Errorf("kustomize object is %v %v", kust["apiVersion"], kust["kind"])
	}
	if !reflect.DeepEqual(kust["spec"], want) {
		t.Errorf("kustomize PrometheusRule spec differs from %s", rulesPath)
	}

	// The chart's copy is rendered by the real helm CLI in
	// deploy/helm_test.go and compared there with this kustomize object.
}

// The sidecar's ConfigMap carries the dashboard JSON byte for byte.
func TestDashboardConfigMap(t *testing.T) {
	files, err := render(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	cm := readYAML(t, files[dashboardCMPath])
	data := cm["data"].(map[any]any)["netsonde.json"].(string)
	if data+"\n" != string(files[dashboardPath]) {
		t.Error("ConfigMap data differs from the dashboard JSON")
	}
	if !bytes.Equal(files[helmDashboardPath], files[dashboardPath]) {
		t.Error("the chart's dashboard differs from the dashboard JSON")
	}
	if cm["metadata"].(map[any]any)["labels"].(map[any]any)["grafana_dashboard"] != "1" {
		t.Error("ConfigMap lacks the sidecar's grafana_dashboard label")
	}
}

// Every panel queries through the datasource variable and the cluster and
// node variables, so the dashboard works on any Prometheus and narrows to
// one node.
func TestDashboardUsesVariables(t *testing.T) {
	b, err := dashboardJSON()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct{ Name string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type       string         `json:"type"`
			Title      string         `json:"title"`
			Datasource map[string]any `json:"datasource"`
			Targets    []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range d.Templating.List {
		names = append(names, v.Name)
	}
	if !reflect.DeepEqual(names, []string{"datasource", "cluster", "node"}) {
		t.Errorf("variables %v", names)
	}
	n := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource["uid"] != "${datasource}" {
			t.Errorf("panel %q: datasource %v", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			n++
			if !strings.Contains(q.Expr, `cluster=~"$cluster"`) || !strings.Contains(q.Expr, `node=~"$node"`) {
				t.Errorf("panel %q: query ignores $cluster or $node: %s", p.Title, q.Expr)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d queries", n)
	}
}
