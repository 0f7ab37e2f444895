package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/netsonde/netsonde/agent"
	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/procnet"
	"github.com/netsonde/netsonde/internal/testenv"
)

// The series budget (README, "Series budget"): how many series a node with
// N interfaces and P pods exports, per collector, at most: each collector's
// Spec.Budget, and the agent's own below. Terms that depend on traffic
// (drop reasons seen, retransmit states) are bounded by the kernel-side
// maps or by the kernel's enums, not by N or P.
func budget(n, p int) map[string]int {
	out := map[string]int{
		// netsonde_collector_up, _duration_seconds, bpf_program_attached,
		// Go and process metrics, build info; plus one
		// netsonde_collector_timeout_total and one
		// netsonde_collector_collections_total per collector,
		// netsonde_http_connections_refused_total, and
		// netsonde_bpf_map_full_total of the drops (2), tcpretrans (1),
		// fragments (1), fsynctrace (3) and tcpconnect (2) maps.
		"agent": 128 + 2*len(agent.Collectors()) + 10,
	}
	for _, s := range agent.Collectors() {
		out[s.Name] = s.Budget(n, p)
	}
	return out
}

// collectorOf names the collector that exports a metric: the one with the
// longest prefix of its name in Spec.Metrics, else the agent.
func collectorOf(name string) string {
	best, of := 0, "agent"
	for _, s := range agent.Collectors() {
		for _, p := range s.Metrics {
			if strings.HasPrefix(name, p) && len(p) > best {
				best, of = len(p), s.Name
			}
		}
	}
	return of
}

const (
	budgetInterfaces = 1000
	budgetPods       = 110
	budgetAddr       = "127.0.0.1:10399"
	budgetChildEnv   = "NETSONDE_BUDGET_CHILD"
	budgetCallsEnv   = "NETSONDE_BUDGET_CALLS"
)

// TestSeriesBudget runs every default collector with 1,000 interfaces in
// the agent's namespace, 110 of them the host ends of pods' veths, pods
// named by a fake cluster.Resolver, and checks each collector's series
// against the budget. The agent runs in this test's own binary, re-executed
// inside the namespace (a Go process cannot move all its threads there).
func TestSeriesBudget(t *testing.T) {
	if os.Getenv(budgetChildEnv) != "" {
		budgetChild(t)
		return
	}
	testenv.RequireRoot(t)
	node := testenv.NewNetns(t)
	var batch strings.Builder
	var pods []string
	for i := range budgetPods {
		pod := testenv.RandomName("nsd-bp")
		pods = append(pods, pod)
		fmt.Fprintf(&batch, "netns add %s\n", pod)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", pod).Run() })
		fmt.Fprintf(&batch, "link add h%d netns %s type veth peer name eth0 netns %s\n", i, node.Name, pod)
	}
	// Each pod's eth0 gets an address, by which the host network view
	// joins it to the fake cluster's pod (as with a real cluster).
	var addrs strings.Builder
	for i, pod := range pods {
		fmt.Fprintf(&addrs, "ip -n %s addr add %s/32 dev eth0\n", pod, budgetPodIP(i))
	}
	// lo, 110 pod veths' host ends, and veth pairs for the rest.
	var local strings.Builder
	for i := range (budgetInterfaces - budgetPods) / 2 {
		fmt.Fprintf(&local, "link add v%da type veth peer name v%db\n", i, i)
	}
	for _, c := range []struct {
		args  []string
		batch string
	}{{[]string{"-batch", "-"}, batch.String()}, {[]string{"-n", node.Name, "-batch", "-"}, local.String()}} {
		cmd := exec.Command("ip", c.args...)
		cmd.Stdin = strings.NewReader(c.batch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ip -batch: %v\n%s", err, out)
		}
	}
	node.Exec(t, "sh", "-c", "for l in $(ls /sys/class/net); do ip link set $l up; done")
	if out, err := exec.Command("sh", "-c", addrs.String()).CombinedOutput(); err != nil {
		t.Fatalf("pod addresses: %v\n%s", err, out)
	}
	calls := filepath.Join(t.TempDir(), "calls")

	child := exec.Command("nsenter", "--net=/run/netns/"+node.Name, "--", os.Args[0], "-test.run=^TestSeriesBudget$")
	child.Env = append(os.Environ(), budgetChildEnv+"="+strings.Join(pods, ","), budgetCallsEnv+"="+calls)
	var log strings.Builder
	child.Stdout, child.Stderr = &log, &log
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		child.Process.Signal(syscall.SIGTERM)
		child.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	}()
	client := node.HTTPClient()
	var body string
	testenv.Eventually(t, 60*time.Second, "agent ready", func() bool {
		resp, err := client.Get("http://" + budgetAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	time.Sleep(2 * time.Second) // the link view and the first drops settle
	resp, err := client.Get("http://" + budgetAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body = string(b)

	got := map[string]int{}
	podSeries := 0
	for _, l := range strings.Split(body, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		name := l[:strings.IndexAny(l, "{ ")]
		got[collectorOf(name)]++
		if strings.Contains(l, `pod="p`) {
			podSeries++
		}
	}
	want := budget(budgetInterfaces+1, budgetPods)
	var names []string
	for c := range got {
		names = append(names, c)
	}
	sort.Strings(names)
	total, totalBudget := 0, 0
	for _, c := range names {
		t.Logf("%-10s %5d series (budget %d)", c, got[c], want[c])
		if got[c] > want[c] {
			t.Errorf("%s: %d series, over its budget of %d for %d interfaces and %d pods", c, got[c], want[c], budgetInterfaces+1, budgetPods)
		}
		total += got[c]
	}
	for _, v := range want {
		totalBudget += v
	}
	t.Logf("total      %5d series (budget %d); %d series name a pod", total, totalBudget, podSeries)
	if got["mtu"] != budgetInterfaces+1 {
		t.Errorf("mtu: %d series, want one per interface (%d)", got["mtu"], budgetInterfaces+1)
	}
	if podSeries < budgetPods {
		t.Errorf("%d series name a pod, want at least one per pod (%d): are pods joined to their namespaces?", podSeries, budgetPods)
	}

	// The child scraped 100 times itself, counting every call the host
	// network view and procfs made meanwhile.
	var report []byte
	testenv.Eventually(t, 60*time.Second, "the child's count of calls during 100 scrapes", func() bool {
		report, err = os.ReadFile(calls)
		return err == nil && strings.HasSuffix(string(report), "done\n")
	})
	t.Logf("during 100 scrapes at %d interfaces:\n%s", budgetInterfaces+1, report)
	for _, l := range strings.Split(strings.TrimSuffix(string(report), "done\n"), "\n") {
		if l == "" {
			continue
		}
		what, n, _ := strings.Cut(l, " ")
		what, onScrape := strings.CutPrefix(what, "scrape:")
		switch {
		case !onScrape:
			// The view's background work, which the scrapes did not wait for.
		case what == "hostnet.Namespaces" || what == "hostnet.Inspect" || what == "hostnet.Counters":
			t.Errorf("%s calls on the scrape path during 100 scrapes: %s, want 0 (netlink and /proc walks belong to the background)", what, n)
		case strings.HasPrefix(what, "proc:") && !budgetCounterFiles[strings.TrimPrefix(what, "proc:")]:
			t.Errorf("procfs %s read %s times during 100 scrapes: only the kernel's counters are read on the scrape path", what, n)
		}
	}
}

// budgetCounterFiles are the procfs files of kernel counters a scrape reads
// (as it reads BPF maps): conntrack's limit, the IP fragmentation counters,
// the agent's own namespace's socket counters and the node's socket memory
// against its limits (sockets; pods' namespaces are read in the background);
// and the softnet counters (one line per CPU).
var budgetCounterFiles = map[string]bool{
	"net/softnet_stat":                   true,
	"sys/net/netfilter/nf_conntrack_max": true,
	"net/snmp":                           true,
	"net/snmp6":                          true,
	"net/netstat":                        true,
	"net/sockstat":                       true,
	"sys/net/ipv4/tcp_mem":               true,
	"sys/net/ipv4/udp_mem":               true,
}

func budgetPodIP(i int) string { return fmt.Sprintf("198.19.%d.%d", 100+i/250, 1+i%250) }

// fakePods is the cluster's pod index: pod i has budgetPodIP(i).
type fakePods map[netip.Addr]cluster.Pod

func (f fakePods) ByIP(a netip.Addr) (cluster.Pod, bool) { p, ok := f[a]; return p, ok }
func (fakePods) PeerNodes(int) []cluster.Node            { return nil }

// counting counts the calls of the host network view's source and the
// procfs reads, by name.
type counting struct {
	src  hostnet.Source
	proc collectors.ProcFS
	mu   sync.Mutex
	n    map[string]int
}

// add counts a call, under "scrape:" when it is made on a scrape's path
// (an HTTP request's goroutine or a collector's Collect), else under
// "background:" (the view's refreshes, which other namespaces appearing on
// a busy machine also ask for).
func (c *counting) add(what string) {
	buf := make([]byte, 64<<10)
	stack := string(buf[:runtime.Stack(buf, false)])
	where := "background:"
	if strings.Contains(stack, "net/http.(*conn).serve") || strings.Contains(stack, "collectors.collectSafely") {
		where = "scrape:"
	}
	c.mu.Lock()
	c.n[where+what]++
	c.mu.Unlock()
}

func (c *counting) Namespaces() map[uint64]string {
	c.add("hostnet.Namespaces")
	return c.src.Namespaces()
}

func (c *counting) Inspect(path string) (hostnet.Inspection, error) {
	c.add("hostnet.Inspect")
	return c.src.Inspect(path)
}

// Counters passes the view's reads of namespaces' counters through.
func (c *counting) Counters(path string, want procnet.Want) (procnet.Counters, error) {
	c.add("hostnet.Counters")
	cs, ok := c.src.(hostnet.CounterSource)
	if !ok {
		return nil, fmt.Errorf("%T reads no counters", c.src)
	}
	return cs.Counters(path, want)
}

func (c *counting) ReadFile(name string) ([]byte, error) {
	c.add("proc:" + name)
	return c.proc.ReadFile(name)
}

func (c *counting) Root() string { return c.proc.Root() }

func (c *counting) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

// scrapeAndCount waits for the agent, lets it settle, then scrapes it 100
// times and writes what was called meanwhile to path.
func scrapeAndCount(t *testing.T, c *counting, path string) {
	get := func(p string) (int, error) {
		resp, err := http.Get("http://" + budgetAddr + p)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if code, err := get("/readyz"); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			os.WriteFile(path, []byte("agent never ready\ndone\n"), 0o644)
			return
		}
	}
	time.Sleep(3 * time.Second) // start-up's background reads end
	c.take()
	var b strings.Builder
	for range 100 {
		if code, err := get("/metrics"); err != nil || code != 200 {
			fmt.Fprintf(&b, "scrape failed %v %d\n", err, code)
		}
	}
	for what, n := range c.take() {
		fmt.Fprintf(&b, "%s %d\n", what, n)
	}
	b.WriteString("done\n")
	os.WriteFile(path, []byte(b.String()), 0o644)
}

// budgetChild is the agent side: every default collector, in-process, with
// the fake resolver, until SIGTERM.
func budgetChild(t *testing.T) {
	pods := fakePods{}
	for i := range strings.Split(os.Getenv(budgetChildEnv), ",") {
		pods[netip.MustParseAddr(budgetPodIP(i))] = cluster.Pod{Namespace: "budget", Name: fmt.Sprintf("p%d", i)}
	}
	count := &counting{src: hostnet.KernelSource{ProcPath: "/proc", PinDirs: hostnet.PinDirs}, proc: collectors.ProcDir("/proc"), n: map[string]int{}}
	go scrapeAndCount(t, count, os.Getenv(budgetCallsEnv))
	app := kingpin.New("budget", "")
	var enabled []collectors.Enabled
	for _, s := range agent.Collectors() {
		f := s.Setup(app)
		if s.DefaultEnabled {
			enabled = append(enabled, collectors.Enabled{Name: s.Name, Help: s.Help, Factory: f})
		}
	}
	if _, err := app.Parse(nil); err != nil {
		t.Fatal(err)
	}
	addrs, systemd, file := []string{budgetAddr}, false, ""
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err := agent.Run(ctx, agent.Config{
		Web:           &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &file},
		TelemetryPath: "/metrics",
		Collectors:    enabled,
		ProcPath:      "/proc",
		SysPath:       "/sys",
		PodIndex:      pods,
		HostNetSource: count,
		Proc:          count,
		// No periodic full read inside the 100 scrapes: what is left
		// to count is what scrapes cause.
		HostNetInterval: time.Hour,
	}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
}
