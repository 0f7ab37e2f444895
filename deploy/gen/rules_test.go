package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The defaults are what rules.yml is written with: configuring them
// changes nothing.
func TestConfigureDefaultsIsIdentity(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(repoRoot, rulesPath))
	if err != nil {
		t.Fatal(err)
	}
	if got := configure(string(rules), defaultRulesConfig); got != string(rules) {
		t.Error("configure with the defaults changed rules.yml")
	}
}

// Another site's settings reach every place the defaults were, and the
// result is still valid rules (promtool check rules, where installed).
func TestRulesCommand(t *testing.T) {
	var out bytes.Buffer
	err := rulesCommand([]string{"-root", repoRoot, "-job-selector", `job="kube-system/netsonde",team="net"`,
		"-cluster-label", "k8s_cluster", "-namespace", "monitoring", "-runbook-url", "https://wiki.example/netsonde",
		"-overlay-latency-ratio", "2.25"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, leftover := range []string{`job="netsonde"`, "(cluster,", "kubectl -n netsonde", "github.com/netsonde/netsonde/blob"} {
		if strings.Contains(got, leftover) {
			t.Errorf("rendered rules still contain %q", leftover)
		}
	}
	for _, want := range []string{`absent(up{job="kube-system/netsonde",team="net"})`, "on (k8s_cluster, node", "by (k8s_cluster, collector",
		"kubectl -n monitoring get pods", "runbook_url: https://wiki.example/netsonde#netsondedown", ") > 2.25\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered rules lack %q", want)
		}
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed: the rendered rules are not checked by it")
		return
	}
	f := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("promtool", "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, b)
	}
	if err := rulesCommand([]string{"-namespace", ""}, &out); err == nil {
		t.Error("an empty -namespace was accepted")
	}
}
