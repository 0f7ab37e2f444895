package main_test

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/netsonde/netsonde/agent"
	"github.com/netsonde/netsonde/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from the live agent")

// The golden test: a namespace with one interface of each common kind, and
// the agent's page compared line by line with testdata/metrics.golden.
// The go_ and process_ metrics are left out, and the values that vary
// from run to run (durations, build info) masked. Run with -update to rewrite the golden file.
func TestMetricsGolden(t *testing.T) {
	ns := testenv.NewNetns(t)
	ns.Exec(t, "ip", "link", "add", "veth-a", "mtu", "1400", "type", "veth", "peer", "name", "veth-b", "mtu", "1400")
	ns.Exec(t, "ip", "link", "add", "br0", "mtu", "9000", "type", "bridge")
	ns.Exec(t, "ip", "link", "add", "vxlan100", "type", "vxlan", "id", "100", "dstport", "4789", "dev", "veth-a", "local", "198.18.0.1")
	ns.Exec(t, "ip", "link", "set", "veth-b", "master", "br0")
	ns.Exec(t, "ip", "link", "add", "mv0", "link", "veth-a", "mtu", "1380", "type", "macvlan", "mode", "bridge")
	ns.Exec(t, "ip", "tuntap", "add", "mode", "tun", "tun0")
	ns.Exec(t, "ip", "link", "add", "ifb9", "type", "ifb")

	agent := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.mtu")
	// Interfaces existed before the agent started, so its first read has
	// them all; no waiting needed.
	_, body := agent.Get(t, "/metrics")
	got := stableLines(body)

	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("/metrics differs from %s (go test -run TestMetricsGolden -update to accept):\n--- got\n%s\n--- want\n%s", golden, got, want)
	}
}

var (
	unstable = regexp.MustCompile(`^(# (HELP|TYPE) )?(go_|process_|promhttp_)`)
	// The agent's own families whose values vary from run to run (the
	// build's stamps, a duration) are kept with the values masked: the
	// page still shows their help, type and label names, which
	// docs/metrics.md is generated from (deploy/gen).
	buildInfo   = regexp.MustCompile(`^netsonde_build_info\{`)
	labelValue  = regexp.MustCompile(`="[^"]*"`)
	durationVal = regexp.MustCompile(`^(netsonde_collector_duration_seconds\{.*\}) \S+$`)
)

// stableLines keeps the lines of a page that are the same on every run,
// sorted within each family as the exposition already is.
func stableLines(page string) string {
	var keep []string
	for _, l := range strings.Split(page, "\n") {
		if l == "" || unstable.MatchString(l) {
			continue
		}
		if buildInfo.MatchString(l) {
			l = labelValue.ReplaceAllString(l, `="*"`)
		}
		l = durationVal.ReplaceAllString(l, "$1 NaN")
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n") + "\n"
}

// promtool, Prometheus' own linter, has nothing to say about the live page.
func TestPromtoolCheckMetrics(t *testing.T) {
	testenv.RequireCommand(t, "promtool")
	ns := testenv.NewNetns(t)
	agent := testenv.StartAgent(t, ns)
	_, body := agent.Get(t, "/metrics")
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	if !strings.Contains(body, "netsonde_interface_mtu_bytes") {
		t.Fatal("page has no MTU metrics")
	}
}

// The endpoints a kubelet and a person use, and the landing page's list.
func TestEndpointsAndLandingPage(t *testing.T) {
	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--web.telemetry-path=/m")
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/m": 200, "/metrics": 404, "/nope": 404} {
		if code, _ := a.Get(t, path); code != want {
			t.Errorf("GET %s = %d, want %d", path, code, want)
		}
	}
	_, page := a.Get(t, "/")
	for _, c := range agentCollectors() {
		if !strings.Contains(page, ">"+c+"</td>") {
			t.Errorf("landing page does not list collector %s:\n%s", c, page)
		}
	}
	if !strings.Contains(page, `href="/m"`) {
		t.Errorf("landing page does not link the telemetry path")
	}
}

// SIGTERM stops the agent within 2 s with status 0 (testenv.StartAgent's
// cleanup asserts both), also while scrapes are in flight.
func TestShutdownDuringScrapes(t *testing.T) {
	stop := make(chan struct{})
	// Registered before StartAgent, so it runs after the agent's cleanup
	// (cleanups run last-in first-out): scrapes go on during shutdown.
	t.Cleanup(func() { close(stop) })
	ns := testenv.NewNetns(t)
	agent := testenv.StartAgent(t, ns)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				if resp, err := agent.Client.Get(agent.URL + "/metrics"); err == nil {
					resp.Body.Close()
				}
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
}

// TLS and basic auth through --web.config.file: a scrape without the
// password is refused, one with it is served over TLS.
func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	dir := t.TempDir()
	testenv.Run(t, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", filepath.Join(dir, "key.pem"), "-out", filepath.Join(dir, "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1")
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prom: %s\n",
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), hash)
	cfgPath := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	ns := testenv.NewNetns(t)
	bin := testenv.AgentBinary(t)
	cmd := ns.Command(bin, "--web.listen-address=127.0.0.1:10333", "--web.config.file="+cfgPath)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	client := ns.HTTPClient()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", "https://127.0.0.1:10333/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testenv.Eventually(t, 10*time.Second, "TLS listener up", func() bool { return get("prom", "s3cret") == 200 })
	if code := get("", ""); code != 401 {
		t.Errorf("no credentials: HTTP %d, want 401", code)
	}
	if code := get("prom", "wrong"); code != 401 {
		t.Errorf("wrong password: HTTP %d, want 401", code)
	}
}

// agentCollectors lists the collectors that are on by default.
func agentCollectors() []string {
	var names []string
	for _, s := range agent.Collectors() {
		if s.DefaultEnabled {
			names = append(names, s.Name)
		}
	}
	return names
}
