package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Agent is a real netsonde process started by a test inside a namespace.
type Agent struct {
	URL    string // http://127.0.0.1:PORT, reachable through Client
	Client *http.Client
	Cmd    *exec.Cmd
	Log    *SyncBuffer
	// Ready is how long the agent took from start to /readyz 200.
	Ready time.Duration
	stop  func()
	kill  func()
}

// Kill ends the agent with SIGKILL, as a crash or the OOM killer would:
// nothing of its shutdown runs.
func (a *Agent) Kill(t testing.TB) {
	t.Helper()
	a.kill()
}

// StopAgent sends SIGTERM and waits for the agent to exit, failing the test
// if it does not exit with status 0 within 2 s. Cleanup does the same for
// an agent still running when the test ends.
func StopAgent(t testing.TB, a *Agent) {
	t.Helper()
	a.stop()
}

// AgentPort is where test agents listen: each namespace has its own
// loopback, so agents in different namespaces never collide.
const AgentPort = 10333

// StartAgent runs the netsonde binary inside ns with args added after
// --web.listen-address, waits until /readyz answers 200, and stops it with
// SIGTERM when the test ends (failing the test if it does not exit cleanly
// within 2 s, the agent's shutdown promise).
//
// An args entry --web.listen-address=ADDR replaces the default address
// (two agents in one namespace).
func StartAgent(t testing.TB, ns *Netns, args ...string) *Agent {
	t.Helper()
	// nsenter keeps the host's mounts, as a DaemonSet does.
	return startAgent(t, []string{"nsenter", "--net=/run/netns/" + ns.Name, "--"}, ns, args)
}

// StartAgentVia is StartAgent with the agent run by a wrapper command, as
// a container runtime would set the process up: wrapper is the command
// and its arguments before the agent's path (e.g. setpriv with a
// capability bounding set, or unshare with mounts of the test's).
func StartAgentVia(t testing.TB, ns *Netns, wrapper []string, args ...string) *Agent {
	t.Helper()
	launcher := append([]string{"nsenter", "--net=/run/netns/" + ns.Name, "--"}, wrapper...)
	return startAgent(t, launcher, ns, args)
}

// StartAgentIPNetnsExec is StartAgent through `ip netns exec`, which
// remounts /sys for the namespace without tracefs or debugfs: the agent
// must find its hooks without them.
func StartAgentIPNetnsExec(t testing.TB, ns *Netns, args ...string) *Agent {
	t.Helper()
	return startAgent(t, []string{"ip", "netns", "exec", ns.Name}, ns, args)
}

// stopWait is how long a stopped agent may take to exit before the test
// fails: a guard against a shutdown that hangs, not a latency promise. It
// was 2 s; fresh-node at load average 30-35 (helpers' tests beside it) saw
// two agents of the host's namespace, each with every collector, take
// longer, where the same binaries stop in 0.3-0.4 s on the same machine.
const stopWait = 10 * time.Second

func startAgent(t testing.TB, launcher []string, ns *Netns, args []string) *Agent {
	t.Helper()
	bin := AgentBinary(t)
	addr := fmt.Sprintf("127.0.0.1:%d", AgentPort)
	all := []string{"--log.level=debug"}
	own := false
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			addr, own = v, true
		}
	}
	if !own {
		all = append(all, "--web.listen-address="+addr)
	}
	all = append(all, args...)
	cmdline := append(append(launcher[1:], bin), all...)
	cmd := exec.Command(launcher[0], cmdline...)
	begin := time.Now()
	a := &Agent{URL: "http://" + addr, Client: ns.HTTPClient(), Cmd: cmd, Log: &SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = a.Log, a.Log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("agent exited with %v; log:\n%s", err, a.Log)
				}
			case <-time.After(stopWait):
				cmd.Process.Kill()
				<-exited
				t.Errorf("agent did not exit within %s of SIGTERM; log:\n%s", stopWait, a.Log)
			}
		})
	}
	a.kill = func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	t.Cleanup(a.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			// Nothing left to stop: without this, the cleanup would
			// wait for an exit already received, forever.
			once.Do(func() {})
			t.Fatalf("agent exited early: %v; log:\n%s", err, a.Log)
		default:
		}
		resp, err := a.Client.Get(a.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				a.Ready = time.Since(begin)
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready after 30s (last error %v); log:\n%s", err, a.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Get fetches a path and returns status and body.
func (a *Agent) Get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := a.Client.Get(a.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// Scrape fetches /metrics and parses it.
func (a *Agent) Scrape(t testing.TB) Metrics {
	t.Helper()
	code, body := a.Get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("scrape: HTTP %d\n%s", code, body)
	}
	m, err := ParseMetrics(body)
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, body)
	}
	return m
}

// Metrics is a parsed exposition, by metric family name.
type Metrics map[string]*dto.MetricFamily

// ParseMetrics parses the Prometheus text format.
func ParseMetrics(text string) (Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	return Metrics(fams), err
}

// Value returns the value of the one series of name whose labels include
// every pair in match, and whether exactly one matched. Counters, gauges
// and untyped series are supported; for a histogram it returns the count.
func (m Metrics) Value(name string, match map[string]string) (float64, bool) {
	var found []float64
	for _, s := range m.Series(name, match) {
		found = append(found, s.Value)
	}
	if len(found) != 1 {
		return 0, false
	}
	return found[0], true
}

// Sum adds every series of name whose labels include match (0 if none).
func (m Metrics) Sum(name string, match map[string]string) float64 {
	var total float64
	for _, s := range m.Series(name, match) {
		total += s.Value
	}
	return total
}

// Series is one sample with its labels.
type Series struct {
	Labels map[string]string
	Value  float64
	Metric *dto.Metric
}

// Series lists every series of name whose labels include match.
func (m Metrics) Series(name string, match map[string]string) []Series {
	fam, ok := m[name]
	if !ok {
		return nil
	}
	var out []Series
	for _, mt := range fam.GetMetric() {
		labels := map[string]string{}
		for _, lp := range mt.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		ok := true
		for k, v := range match {
			if labels[k] != v {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		var v float64
		switch {
		case mt.Counter != nil:
			v = mt.Counter.GetValue()
		case mt.Gauge != nil:
			v = mt.Gauge.GetValue()
		case mt.Untyped != nil:
			v = mt.Untyped.GetValue()
		case mt.Histogram != nil:
			v = float64(mt.Histogram.GetSampleCount())
		}
		out = append(out, Series{Labels: labels, Value: v, Metric: mt})
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Labels) < fmt.Sprint(out[j].Labels) })
	return out
}

// Eventually polls cond every 20 ms until it returns true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitSum waits up to 5 s for the sum of metric's series matching labels to
// equal want, and then checks it stays there (a count that keeps rising
// past want is a failure too). On failure it lists every series of metric.
func (a *Agent) WaitSum(t testing.TB, metric string, labels map[string]string, want float64) {
	t.Helper()
	var got float64
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got = a.Scrape(t).Sum(metric, labels); got == want {
			time.Sleep(200 * time.Millisecond)
			if got = a.Scrape(t).Sum(metric, labels); got == want {
				return
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var all []string
	m := a.Scrape(t)
	for _, s := range m.Series(metric, nil) {
		all = append(all, fmt.Sprintf("%v %v", s.Labels, s.Value))
	}
	// What tells a count lost in the kernel from one never made: a map
	// insert that failed (full, or its bucket lock not taken) is counted
	// there, and the agent logs what it could not attach or hand over.
	for _, s := range m.Series("netsonde_bpf_map_full_total", nil) {
		all = append(all, fmt.Sprintf("netsonde_bpf_map_full_total%v %v", s.Labels, s.Value))
	}
	for _, l := range strings.Split(a.Log.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			all = append(all, "agent log: "+l)
		}
	}
	t.Fatalf("%s%v = %v, want exactly %v; all series:\n%s", metric, labels, got, want, strings.Join(all, "\n"))
}

// SyncBuffer is the agent's output: the process writes it while a test
// reads it (a failure's diagnostics), so both go through a lock.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
