package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// The monitoring stack of the test: Debian's prometheus and
// prometheus-alertmanager and a webhook receiver, all in one network
// namespace ("mon") that reaches each node namespace over its own veth.
// Nothing listens in the host's namespace, so ports never collide with
// another test or a real service.

// node is a network namespace acting as a Kubernetes node, with a netsonde
// agent that Prometheus scrapes at addr over the node's eth0.
type node struct {
	name  string // the node label
	ns    *testenv.Netns
	addr  string // 198.18.200.x on the node's eth0
	peer  string // the mon namespace's end of the link
	agent *testenv.Agent
}

// linkNode joins a new node namespace to mon with a /30 on 198.18.200.0/24:
// mon holds .4i+1 on vn<i>, the node .4i+2 on eth0.
func linkNode(t *testing.T, mon *testenv.Netns, i int, name string) *node {
	t.Helper()
	n := &node{name: name, ns: testenv.NewNetns(t),
		peer: fmt.Sprintf("198.18.200.%d", 4*i+1), addr: fmt.Sprintf("198.18.200.%d", 4*i+2)}
	vn := fmt.Sprintf("vn%d", i)
	// Created inside mon with its peer moved straight into the node, so no
	// name ever appears in the host's namespace.
	mon.Exec(t, "ip", "link", "add", vn, "type", "veth", "peer", "name", "eth0", "netns", n.ns.Name)
	mon.Exec(t, "ip", "addr", "add", n.peer+"/30", "dev", vn)
	mon.Exec(t, "ip", "link", "set", vn, "up")
	n.ns.Exec(t, "ip", "addr", "add", n.addr+"/30", "dev", "eth0")
	n.ns.Exec(t, "ip", "link", "set", "eth0", "up")
	return n
}

// freePort returns a TCP port free on mon's loopback. Only this test uses
// mon, so nothing can take the port between here and its use.
func freePort(t *testing.T, mon *testenv.Netns) int {
	t.Helper()
	var port int
	err := mon.Do(func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	})
	if err != nil {
		t.Fatalf("free port in mon: %v", err)
	}
	return port
}

// daemon starts a long-running tool inside mon and stops it when the test
// ends, printing its log if the test failed.
func daemon(t *testing.T, mon *testenv.Netns, logName string, name string, args ...string) {
	t.Helper()
	testenv.RequireCommand(t, name)
	log, err := os.Create(filepath.Join(t.TempDir(), logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd := mon.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log (tail):\n%s", name, tail(string(b), 4000))
		}
		log.Close()
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitHTTP polls url from inside mon until it answers 200.
func waitHTTP(t *testing.T, c *http.Client, what, u string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, what+" ready at "+u, func() bool {
		resp, err := c.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// notification is one alert as the webhook received it.
type notification struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// receiver is the page: Alertmanager's webhook, recording every status
// each alert (by its full label set) was ever sent with, in order.
type receiver struct {
	mu     sync.Mutex
	seen   map[string][]string
	labels map[string]map[string]string
	annots map[string]map[string]string
}

func alertKey(labels map[string]string) string {
	var pairs []string
	for k, v := range labels {
		if k != "alertname" {
			pairs = append(pairs, fmt.Sprintf("%s=%q", k, v))
		}
	}
	sort.Strings(pairs)
	return labels["alertname"] + "{" + strings.Join(pairs, ",") + "}"
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var msg struct {
		Alerts []notification `json:"alerts"`
	}
	if err := json.NewDecoder(req.Body).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range msg.Alerts {
		k := alertKey(a.Labels)
		if s := r.seen[k]; len(s) == 0 || s[len(s)-1] != a.Status {
			r.seen[k] = append(r.seen[k], a.Status)
		}
		r.labels[k], r.annots[k] = a.Labels, a.Annotations
	}
}

// statuses returns a copy of what was received so far.
func (r *receiver) statuses() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.seen))
	for k, v := range r.seen {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// startReceiver serves the webhook on mon's loopback and returns its URL.
func startReceiver(t *testing.T, mon *testenv.Netns) (*receiver, string) {
	t.Helper()
	var l net.Listener
	if err := mon.Do(func() (err error) { l, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatalf("webhook listener: %v", err)
	}
	r := &receiver{seen: map[string][]string{}, labels: map[string]map[string]string{}, annots: map[string]map[string]string{}}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return r, "http://" + l.Addr().String() + "/hook"
}

// startAlertmanager runs Alertmanager routing every alert, ungrouped, to
// the webhook within about a second, resolved notifications included.
func startAlertmanager(t *testing.T, mon *testenv.Netns, hook string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: page
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: page
    webhook_configs:
      - url: %q
        send_resolved: true
`, hook)
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, mon))
	daemon(t, mon, "alertmanager.log", "prometheus-alertmanager",
		"--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=", // no gossip: a single instance
		"--log.level=debug")
	waitHTTP(t, mon.HTTPClient(), "alertmanager", "http://"+addr+"/-/ready")
	return addr
}

// timeScale turns the shipped rules' minutes into the test's seconds.
const timeScale = 60

var (
	forRe   = regexp.MustCompile(`(?m)^(\s+for:\s*)(\d+)([smh])\s*$`)
	rangeRe = regexp.MustCompile(`\[(\d+)([smh])\]`)
)

func scaled(n string, unit string, minimum time.Duration) string {
	v, _ := strconv.Atoi(n)
	d := time.Duration(v) * map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	d /= timeScale
	d = max(d, minimum).Round(time.Second)
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// scaleRules is rules.yml with every `for` and every range selector divided
// by timeScale: the same expressions and thresholds, run sixty times
// faster. Ranges keep at least 5 s (five scrapes) so rate() has samples.
func scaleRules(rules []byte) []byte {
	out := forRe.ReplaceAllFunc(rules, func(m []byte) []byte {
		s := forRe.FindSubmatch(m)
		return []byte(string(s[1]) + scaled(string(s[2]), string(s[3]), time.Second))
	})
	return rangeRe.ReplaceAllFunc(out, func(m []byte) []byte {
		s := rangeRe.FindSubmatch(m)
		return []byte("[" + scaled(string(s[1]), string(s[2]), 5*time.Second) + "]")
	})
}

// startPrometheus runs Prometheus with the scaled rules, scraping each
// node's agent every second and sending alerts to Alertmanager.
func startPrometheus(t *testing.T, mon *testenv.Netns, rules []byte, am string, nodes []*node) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), scaleRules(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	var targets strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&targets, "      - targets: [%q]\n        labels: {node: %q, cluster: e2e}\n", n.addr+":10333", n.name)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: netsonde
    static_configs:
%s`, am, targets.String())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.RequireCommand(t, "promtool")
	testenv.Run(t, "promtool", "check", "config", filepath.Join(dir, "prometheus.yml"))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, mon))
	daemon(t, mon, "prometheus.log", "prometheus",
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		// Resend firing alerts every second instead of every minute, so
		// Alertmanager never times one out between evaluations.
		"--rules.alert.resend-delay=1s",
		"--log.level=warn")
	waitHTTP(t, mon.HTTPClient(), "prometheus", "http://"+addr+"/-/ready")
	return "http://" + addr
}

// sample is one series of an instant query's result.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query and returns its vector.
func query(c *http.Client, prom, q string) ([]sample, error) {
	resp, err := c.Get(prom + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", body, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s", q, r.Data.ResultType)
	}
	var v []sample
	if err := json.Unmarshal(r.Data.Result, &v); err != nil {
		return nil, err
	}
	return v, nil
}
