package drops_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/netsonde/netsonde/internal/testenv"
)

const dropsMetric = "netsonde_packet_drops_total"

// pair is a veth pair from namespace "from" (address .1) to namespace "to"
// (address .2) on 198.18.N.0/24.
type pair struct {
	from, to    *testenv.Netns
	fromIf, to_ string
	toIP        string
}

func newPair(t *testing.T, from, to *testenv.Netns, subnet int) pair {
	t.Helper()
	p := pair{from: from, to: to, fromIf: testenv.RandomName("da"), to_: testenv.RandomName("db")}
	p.toIP = fmt.Sprintf("198.18.%d.2", subnet)
	testenv.Run(t, "ip", "link", "add", p.fromIf, "netns", from.Name, "type", "veth", "peer", "name", p.to_, "netns", to.Name)
	from.Exec(t, "ip", "addr", "add", fmt.Sprintf("198.18.%d.1/24", subnet), "dev", p.fromIf)
	to.Exec(t, "ip", "addr", "add", p.toIP+"/24", "dev", p.to_)
	from.Exec(t, "ip", "link", "set", p.fromIf, "up")
	to.Exec(t, "ip", "link", "set", p.to_, "up")
	// Resolve ARP first, so no datagram waits in (or is dropped from) the
	// neighbour queue.
	from.Exec(t, "ping", "-c", "1", "-W", "2", p.toIP)
	return p
}

// send sends n UDP datagrams from the pair's first namespace to port,
// paced so the receiver's backlog (netdev_max_backlog) never overflows:
// only the drops the test means to cause may happen.
func (p pair) send(t *testing.T, port, n int) {
	t.Helper()
	err := p.from.Do(func() error {
		// Unconnected: on a connected socket an ICMP port unreachable
		// would fail the next send, and that datagram never leave.
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.ParseIP(p.toIP), Port: port}
		for i := 0; i < n; i++ {
			if _, err := c.WriteTo([]byte("netsonde drop test"), to); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
			if i%50 == 49 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func dropRule(t *testing.T, ns *testenv.Netns, port int) {
	t.Helper()
	testenv.RequireCommand(t, "nft")
	ns.Exec(t, "nft", fmt.Sprintf("add table inet nsdtest; add chain inet nsdtest in { type filter hook input priority 0; }; add rule inet nsdtest in udp dport %d drop", port))
}

func drops(t *testing.T, a *testenv.Agent, reason, iface string) float64 {
	return a.Scrape(t).Sum(dropsMetric, map[string]string{"reason": reason, "interface": iface, "protocol": "ipv4", "namespace": "", "pod": ""})
}

func waitDrops(t *testing.T, a *testenv.Agent, reason, iface string, want float64) {
	t.Helper()
	a.WaitSum(t, dropsMetric, map[string]string{"reason": reason, "interface": iface, "protocol": "ipv4", "namespace": "", "pod": ""}, want)
}

// 1,000 UDP datagrams dropped by an nftables rule on a veth → exactly
// 1,000 NETFILTER_DROP on that veth; 100 to a closed port → exactly 100
// NO_SOCKET; and 300 drops in another namespace on an interface with the
// same ifindex are never counted on the first one.
func testDropsByReason(t *testing.T, agentArgs ...string) {
	testDropsByReasonWith(t, testenv.StartAgent, agentArgs...)
}

func testDropsByReasonWith(t *testing.T, start func(testing.TB, *testenv.Netns, ...string) *testenv.Agent, agentArgs ...string) {
	nsAgent := testenv.NewNetns(t)
	nsA := testenv.NewNetns(t)
	nsB := testenv.NewNetns(t)
	a := start(t, nsAgent, append([]string{"--collector.disable-defaults", "--collector.drops"}, agentArgs...)...)
	hook := "tp_btf"
	for _, arg := range agentArgs {
		if h, ok := strings.CutPrefix(arg, "--drops.attach="); ok {
			hook = h
		}
	}
	if v, ok := a.Scrape(t).Value("netsonde_bpf_program_attached", map[string]string{"program": "kfree_skb", "hook": hook}); !ok || v != 1 {
		t.Fatalf("kfree_skb not attached by %s:\n%s", hook, a.Log)
	}

	p1 := newPair(t, nsAgent, nsA, 1)
	p2 := newPair(t, nsAgent, nsB, 2)
	idx := func(ns *testenv.Netns, ifname string) string {
		return strings.TrimSpace(ns.Exec(t, "cat", "/sys/class/net/"+ifname+"/ifindex"))
	}
	if ia, ib := idx(nsA, p1.to_), idx(nsB, p2.to_); ia != ib {
		t.Fatalf("want the same ifindex in both namespaces to prove per-namespace naming, got %s and %s", ia, ib)
	}
	dropRule(t, nsA, 9999)
	dropRule(t, nsB, 9999)

	p1.send(t, 9999, 1000)
	waitDrops(t, a, "NETFILTER_DROP", p1.to_, 1000)

	p1.send(t, 7, 100) // nothing listens on port 7 in nsA
	waitDrops(t, a, "NO_SOCKET", p1.to_, 100)

	p2.send(t, 9999, 300)
	waitDrops(t, a, "NETFILTER_DROP", p2.to_, 300)
	if got := drops(t, a, "NETFILTER_DROP", p1.to_); got != 1000 {
		t.Fatalf("drops in namespace B leaked onto A's interface: %v, want 1000", got)
	}
}

func TestDropsByReason(t *testing.T) {
	testDropsByReason(t)
}

// The classic tracepoint, forced, counts exactly the same: its record
// layout is read from the running kernel's format, through a tracefs the
// agent mounts privately where the node has none.
func TestDropsByReasonClassicTracepoint(t *testing.T) {
	testDropsByReason(t, "--drops.attach=tracepoint")
}

// The raw tracepoint, forced, counts exactly the same.
func TestDropsByReasonRawTracepoint(t *testing.T) {
	testDropsByReason(t, "--drops.attach=raw_tp")
}

// Under `ip netns exec`, which remounts /sys without tracefs, even the
// classic tracepoint attaches (a private tracefs mount) and counts exactly.
func TestDropsUnderIPNetnsExec(t *testing.T) {
	testDropsByReasonWith(t, testenv.StartAgentIPNetnsExec, "--drops.attach=tracepoint")
}

// A tracepoint that cannot be found takes the drops collector down with a
// reason; the agent and the other collectors keep serving.
func TestDropsDownWhenHookMissing(t *testing.T) {
	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.drops", "--collector.mtu",
		"--drops.attach=tracepoint", "--drops.tracefs="+t.TempDir())
	m := a.Scrape(t)
	if v, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "drops", "reason": "attach_failed"}); !ok || v != 0 {
		t.Fatalf("drops collector should be down with attach_failed:\n%s", a.Log)
	}
	if v, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "mtu", "reason": ""}); !ok || v != 1 {
		t.Fatal("mtu collector should be up")
	}
	if _, ok := m.Value("netsonde_interface_mtu_bytes", map[string]string{"interface": "lo"}); !ok {
		t.Fatal("mtu metrics missing")
	}
	if !strings.Contains(a.Log.String(), "skb:kfree_skb") && !strings.Contains(a.Log.String(), "tracepoint format") {
		t.Errorf("log does not say what was tried:\n%s", a.Log)
	}
}

// objectsOf lists the BPF program and map ids a process holds, from its
// file descriptors' fdinfo (prog_id: / map_id: lines).
func objectsOf(t *testing.T, pid int) (progs, maps []string) {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if id, ok := strings.CutPrefix(line, "prog_id:"); ok {
				progs = append(progs, strings.TrimSpace(id))
			}
			if id, ok := strings.CutPrefix(line, "map_id:"); ok {
				maps = append(maps, strings.TrimSpace(id))
			}
		}
	}
	return progs, maps
}

func exists(kind, id string) bool {
	return exec.Command("bpftool", kind, "show", "id", id).Run() == nil
}

// After the agent exits, none of the programs and maps it held is left in
// the kernel.
func TestNothingLeftInKernel(t *testing.T) {
	testenv.RequireCommand(t, "bpftool")
	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.drops")
	pid := a.Cmd.Process.Pid
	progs, maps := objectsOf(t, pid)
	if len(progs) < 1 || len(maps) < 3 {
		t.Fatalf("agent holds progs %v and maps %v; want 1 program and its 3 maps", progs, maps)
	}
	testenv.StopAgent(t, a)
	// The kernel frees programs and maps after an RCU grace period and
	// deferred work, so allow it a moment.
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("programs %v and maps %v gone from the kernel", progs, maps), func() bool {
		for _, id := range progs {
			if exists("prog", id) {
				return false
			}
		}
		for _, id := range maps {
			if exists("map", id) {
				return false
			}
		}
		return true
	})
}

// With room for a single key, the map is full from the first drop on; the
// 1,000 drops still count, by reason, in the overflow slot (or in the one
// key, if it is theirs): their sum is exact and the overflow is visible.
// The agent counts only the test's two namespaces: with one key, every drop
// of the machine lands in the overflow slot, and fresh-node once saw other
// packages' NETFILTER_DROPs there while this test waited for exactly 1,000.
func TestDropsCountedWhenMapFull(t *testing.T) {
	nsAgent := testenv.NewNetns(t)
	nsA := testenv.NewNetns(t)
	a := testenv.StartAgent(t, nsAgent, agentArgs(t, []*testenv.Netns{nsAgent, nsA}, "--drops.map-size=1")...)
	p := newPair(t, nsAgent, nsA, 3)
	dropRule(t, nsA, 9999)
	before := a.Scrape(t).Sum(dropsMetric, map[string]string{"reason": "NETFILTER_DROP", "interface": ""})
	p.send(t, 9999, 1000)
	testenv.Eventually(t, 5*time.Second, "1,000 NETFILTER_DROP between the key and the overflow slot", func() bool {
		m := a.Scrape(t)
		got := m.Sum(dropsMetric, map[string]string{"reason": "NETFILTER_DROP", "interface": p.to_}) +
			m.Sum(dropsMetric, map[string]string{"reason": "NETFILTER_DROP", "interface": ""}) - before
		return got == 1000
	})
	m := a.Scrape(t)
	if len(m.Series(dropsMetric, nil)) > 1+len(m.Series(dropsMetric, map[string]string{"interface": "", "protocol": ""})) {
		t.Errorf("more than one keyed series with a one-key map")
	}
	if v, _ := m.Value("netsonde_packet_drops_overflow_total", nil); v == 0 && m.Sum(dropsMetric, map[string]string{"interface": p.to_}) != 1000 {
		t.Errorf("drops overflowed but the overflow counter is 0")
	}
}

// Interfaces and namespaces come and go. A deleted interface's series keeps
// its count until --drops.forget-after, then disappears; it never drops to
// another label set in between.
func TestSeriesOfDeletedInterfaceGoes(t *testing.T) {
	nsAgent := testenv.NewNetns(t)
	nsA := testenv.NewNetns(t)
	// A map with room to spare: the agent counts every namespace of the
	// machine, and the other packages' tests running meanwhile (1,000
	// interfaces coming up, a million conntrack flows dropped) add keys of
	// their own, which must not push this test's drops into the
	// by-reason-only count.
	a := testenv.StartAgent(t, nsAgent, "--collector.disable-defaults", "--collector.drops", "--drops.forget-after=2s", "--hostnet.refresh-interval=500ms", "--drops.map-size=65536")
	p := newPair(t, nsAgent, nsA, 4)
	dropRule(t, nsA, 9999)
	p.send(t, 9999, 200)
	waitDrops(t, a, "NETFILTER_DROP", p.to_, 200)

	testenv.Run(t, "ip", "netns", "exec", nsA.Name, "ip", "link", "del", p.to_)
	// Right after: still there, same count, same labels.
	waitDrops(t, a, "NETFILTER_DROP", p.to_, 200)
	testenv.Eventually(t, 10*time.Second, "series of the deleted interface gone", func() bool {
		return len(a.Scrape(t).Series(dropsMetric, map[string]string{"interface": p.to_})) == 0
	})
}

// Many more distinct (interface, reason) keys than --drops.map-size:
// 1,000 interfaces each dropping 3 packets (NETFILTER_DROP at POSTROUTING,
// where the skb has its output device) into a map of 64 keys. Every drop
// is counted, keyed or by reason alone; the keyed series never exceed the
// map; netsonde_bpf_map_full_total{map="drops"} counts the rest; the
// agent's memory stays well inside the chart's limit. The agent counts
// only the test's namespace (--drops.only-netns), which has no IPv6 (no
// router solicitation or DAD of its own to drop), so the figures are exact
// while the rest of the machine drops too: the first 64 interfaces' keys
// fill the map, the other 936 interfaces' drops are map full, each
// counted once. (Issue 20's 10,000
// distinct keys pass through the map in TestNetnsChurnBounded: one per
// namespace. 10,000 veth pairs here took 4 minutes to make and remove,
// and the agent's RSS peaked at 101 MiB with 20,000 interfaces in view.)
func TestDropsBoundedWithManyKeys(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	const (
		ifaces  = 1_000
		each    = 3
		mapSize = 64
	)
	nsAgent := testenv.NewNetns(t)
	ns := quietNetns(t)
	a := testenv.StartAgent(t, nsAgent, agentArgs(t, []*testenv.Netns{ns}, fmt.Sprintf("--drops.map-size=%d", mapSize),
		// The interfaces are made after the agent has read the namespace:
		// until it reads it again, their keys have no name.
		"--hostnet.refresh-interval=500ms")...)
	var batch strings.Builder
	for i := range ifaces {
		fmt.Fprintf(&batch, "link add d%d type veth peer name p%d\nlink set d%d up\nlink set p%d up\naddress add 198.19.%d.%d/30 dev d%d\n", i, i, i, i, i/64, (i%64)*4+1, i)
	}
	cmd := ns.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
	ns.Exec(t, "nft", "add table inet t; add chain inet t post { type filter hook postrouting priority 0; }; add rule inet t post udp dport 9999 drop")

	// Keyed drops the agent cannot name yet have interface="" too, but a
	// protocol.
	byReason := map[string]string{"reason": "NETFILTER_DROP", "interface": "", "protocol": ""}
	// Any reason: a drop of the namespace's own other than ours (the
	// agent's netlink sockets there, say) that finds the map full is one
	// more map full, and counted by reason alone too.
	anyByReason := map[string]string{"interface": "", "protocol": ""}
	m := a.Scrape(t)
	overflowBefore := m.Sum(dropsMetric, byReason)
	anyBefore := m.Sum(dropsMetric, anyByReason)
	fullBefore, _ := m.Value("netsonde_bpf_map_full_total", map[string]string{"map": "drops"})
	begin := time.Now()
	err := ns.Do(func() error {
		for i := range ifaces {
			c, err := net.Dial("udp4", fmt.Sprintf("198.19.%d.%d:9999", i/64, (i%64)*4+2))
			if err != nil {
				return err
			}
			for range each {
				c.Write([]byte("x")) // dropped: the error (EPERM) is expected
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mine := func(m testenv.Metrics) (keyed float64, series int) {
		for _, s := range m.Series(dropsMetric, map[string]string{"reason": "NETFILTER_DROP"}) {
			if strings.HasPrefix(s.Labels["interface"], "d") {
				keyed += s.Value
				series++
			}
		}
		return keyed, series
	}
	var keyed, overflow, full, rssMax float64
	var series int
	testenv.Eventually(t, 30*time.Second, "every drop counted, keyed or by reason", func() bool {
		m = a.Scrape(t)
		rss, _ := m.Value("process_resident_memory_bytes", nil)
		rssMax = max(rssMax, rss)
		keyed, series = mine(m)
		overflow = m.Sum(dropsMetric, byReason) - overflowBefore
		f, _ := m.Value("netsonde_bpf_map_full_total", map[string]string{"map": "drops"})
		full = f - fullBefore
		return keyed+overflow >= ifaces*each
	})
	took := time.Since(begin)
	// Counted once each: past this, a count still rising is one too many.
	time.Sleep(500 * time.Millisecond)
	m = a.Scrape(t)
	keyed, series = mine(m)
	overflow = m.Sum(dropsMetric, byReason) - overflowBefore
	f, _ := m.Value("netsonde_bpf_map_full_total", map[string]string{"map": "drops"})
	full = f - fullBefore
	anyReason := m.Sum(dropsMetric, anyByReason) - anyBefore
	// Exact: every drop once, keyed (each interface's 3 under one key) or
	// by reason alone, and every map-full event a drop counted by reason.
	// A key or two of the 64 may be the namespace's own (fresh-node once
	// saw 62 of ours keyed, the other two keys held by drops the test did
	// not make), so the keyed series are at most the map, not exactly it.
	if keyed != float64(series)*each || series > mapSize || series < mapSize-4 || keyed+overflow != ifaces*each || full != anyReason {
		t.Errorf("%v keyed in %d series, %v by reason alone (%v of any reason), map full %v; want 3 keyed per series in at most %d series, %d in all, map full as many as by reason alone of any reason",
			keyed, series, overflow, anyReason, full, mapSize, ifaces*each)
		for _, s := range m.Series(dropsMetric, map[string]string{"reason": "NETFILTER_DROP"}) {
			if !strings.HasPrefix(s.Labels["interface"], "d") {
				t.Logf("not ours: %v %v", s.Labels, s.Value)
			}
		}
		for _, s := range m.Series(dropsMetric, nil) {
			if s.Labels["reason"] != "NETFILTER_DROP" {
				t.Logf("not ours: %v %v", s.Labels, s.Value)
			}
		}
	}
	// A few scrapes more, with the host view's refreshes of the 20,000
	// interfaces meanwhile.
	for range 5 {
		time.Sleep(500 * time.Millisecond)
		rss, _ := a.Scrape(t).Value("process_resident_memory_bytes", nil)
		rssMax = max(rssMax, rss)
	}
	const limit = 128 << 20 // the chart's memory limit
	if rssMax > limit*3/4 {
		t.Errorf("RSS peaked at %.0f MiB; the chart's limit is %d MiB", rssMax/(1<<20), limit>>20)
	}
	t.Logf("%d drops on %d interfaces into a %d-key map: %v keyed in %d series, %v by reason alone; map full %v times; counted within %v; RSS peak %.1f MiB",
		ifaces*each, ifaces, mapSize, keyed, series, overflow, full, took, rssMax/(1<<20))
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "drops-map-full",
		Injected: fmt.Sprintf("%d distinct interfaces each dropping %d packets into --drops.map-size=%d", ifaces, each, mapSize),
		Lost:     fmt.Sprintf("no drop: %v keyed (%d series), %v counted by reason alone with netsonde_bpf_map_full_total{map=\"drops\"} +%v", keyed, series, overflow, full),
		Recovery: fmt.Sprintf("nothing to recover: all counted, the keyed ones under their interface's name, within %v (--hostnet.refresh-interval=500ms); RSS peak %.1f MiB of the chart's 128 MiB", took.Round(time.Millisecond), rssMax/(1<<20)),
		Figures: map[string]any{"interfaces": ifaces, "drops": ifaces * each, "map_size": mapSize, "keyed": keyed,
			"keyed_series": series, "by_reason_only": overflow, "map_full": full, "counted_within_ms": took.Milliseconds(), "rss_peak_bytes": rssMax},
	})
}

// Network namespaces by the thousand, each dropping packets (UDP to a port
// nobody listens on, NO_SOCKET on its loopback) and then deleted: every
// drop is counted, the counter never goes back when the vanished
// namespaces' keys are forgotten, and the agent's goroutines and open
// files come back to where they were, its RSS within the chart's limit.
func TestNetnsChurnBounded(t *testing.T) {
	// Issue 20's 100,000 namespaces, in waves of 1,000 created, dropping
	// and deleted, as a node churns pods (about 2.5 minutes here);
	// NETSONDE_NETNS_CHURN=10000 runs fewer, for a quicker look.
	n := 100_000
	if v := os.Getenv("NETSONDE_NETNS_CHURN"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 || n%1000 != 0 {
			t.Fatalf("NETSONDE_NETNS_CHURN=%q: want a multiple of 1000", v)
		}
	}
	const (
		wave = 1000
		each = 2
	)
	nsAgent := testenv.NewNetns(t)
	// The map is the host's: while the waves run, other packages' tests
	// (1,001 interfaces, floods in pods) drop in their own namespaces
	// too, and with the last waves' keys not yet forgotten they once
	// filled the default 8,192 keys, so some of this test's drops were
	// counted by reason alone (the overflow) and never under lo. This
	// test is about churn; overflow has TestDropsBoundedWithManyKeys.
	a := testenv.StartAgent(t, nsAgent, "--collector.disable-defaults", "--collector.drops", "--drops.forget-after=2s", "--hostnet.refresh-interval=500ms", "--drops.map-size=65536")
	lo := map[string]string{"reason": "NO_SOCKET", "interface": "lo"}
	gauge := func(m testenv.Metrics, name string) float64 { v, _ := m.Value(name, nil); return v }
	// One drop in the agent's own namespace, which lives through the whole
	// test: the label set always has a namespace behind it, so it never
	// ends between two waves, and its sum only grows.
	testenv.SendUDP(t, nsAgent, "127.0.0.1:9", 1, 1, 0)
	testenv.Eventually(t, 10*time.Second, "the agent's own drop counted", func() bool {
		return a.Scrape(t).Sum(dropsMetric, lo) >= 1
	})
	m := a.Scrape(t)
	before := m.Sum(dropsMetric, lo)
	goroutines, fds := gauge(m, "go_goroutines"), gauge(m, "process_open_fds")
	var rssMax float64

	batch := func(cmds string) error {
		cmd := exec.Command("ip", "-batch", "-")
		cmd.Stdin = strings.NewReader(cmds)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ip -batch: %v\n%s", err, out)
		}
		return nil
	}
	defer func() {
		if t.Failed() {
			m := a.Scrape(t)
			for _, s := range m.Series(dropsMetric, nil) {
				t.Logf("%v %v", s.Labels, s.Value)
			}
			t.Logf("overflowed (counted by reason alone): %v", gauge(m, "netsonde_packet_drops_overflow_total"))
		}
	}()
	begin := time.Now()
	var counted float64
	for w := range n / wave {
		prefix := testenv.RandomName("nsc-") + "-"
		var add, del strings.Builder
		for i := range wave {
			fmt.Fprintf(&add, "netns add %s%d\n", prefix, i)
			fmt.Fprintf(&del, "netns del %s%d\n", prefix, i)
		}
		deleted := false
		t.Cleanup(func() {
			if !deleted {
				batch(del.String())
			}
		})
		if err := batch(add.String()); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // not unlocked: the thread ends in whichever namespace
			errc <- func() error {
				for i := range wave {
					h, err := netns.GetFromName(fmt.Sprintf("%s%d", prefix, i))
					if err != nil {
						return err
					}
					err = netns.Set(h)
					h.Close()
					if err != nil {
						return err
					}
					l, err := netlink.LinkByName("lo")
					if err != nil {
						return err
					}
					if err := netlink.LinkSetUp(l); err != nil {
						return err
					}
					// Unconnected: a connected socket would fail its
					// second send with the first one's ICMP error.
					c, err := net.ListenPacket("udp4", "127.0.0.1:0")
					if err != nil {
						return err
					}
					for range each {
						c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
					}
					c.Close()
				}
				return nil
			}()
		}()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("every drop of wave %d's namespaces counted", w+1), func() bool {
			m := a.Scrape(t)
			rssMax = max(rssMax, gauge(m, "process_resident_memory_bytes"))
			counted = m.Sum(dropsMetric, lo)
			return counted-before >= float64((w+1)*wave*each)
		})
		if err := batch(del.String()); err != nil {
			t.Fatal(err)
		}
		deleted = true
	}
	countedIn := time.Since(begin)
	// At least: other tests' namespaces may drop on their loopback too,
	// under the same labels (no pod names them).
	if counted-before < float64(n*each) {
		t.Errorf("%v drops counted, want %d", counted-before, n*each)
	}
	gone := time.Now()
	// Past --drops.forget-after, with scrapes meanwhile: the vanished
	// namespaces' keys are forgotten, their counts retired into the
	// label set they had.
	for range 8 {
		time.Sleep(400 * time.Millisecond)
		a.Scrape(t)
	}
	var last testenv.Metrics
	testenv.Eventually(t, 30*time.Second, "goroutines and open files back to their baseline", func() bool {
		last = a.Scrape(t)
		rssMax = max(rssMax, gauge(last, "process_resident_memory_bytes"))
		// The series may end once every namespace behind it is gone
		// (that is --drops.forget-after's purpose), but while it is
		// there it must never go back: that would read as a reset.
		if s := last.Series(dropsMetric, lo); len(s) > 0 {
			if got := last.Sum(dropsMetric, lo); got < counted {
				t.Fatalf("the count went back from %v to %v after the namespaces went", counted, got)
			}
		}
		return gauge(last, "go_goroutines") <= goroutines+5 && gauge(last, "process_open_fds") <= fds+5
	})
	settled := time.Since(gone)
	testenv.StopAgent(t, a) // before reading its log, which it writes
	if !strings.Contains(a.Log.String(), "forgot drop counters of vanished namespaces") {
		t.Errorf("the agent did not forget the vanished namespaces' keys")
	}
	const limit = 128 << 20 // the chart's memory limit
	if rssMax > limit*3/4 {
		t.Errorf("RSS peaked at %.0f MiB; the chart's limit is %d MiB", rssMax/(1<<20), limit>>20)
	}
	t.Logf("%d namespaces × %d drops counted within %v; after deleting them, goroutines %v→%v, open files %v→%v within %v; RSS peak %.1f MiB",
		n, each, countedIn.Round(time.Millisecond), goroutines, gauge(last, "go_goroutines"), fds, gauge(last, "process_open_fds"), settled.Round(time.Millisecond), rssMax/(1<<20))
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "netns-churn",
		Injected: fmt.Sprintf("%d network namespaces created, %d drops in each, then deleted (--drops.forget-after=2s)", n, each),
		Lost:     fmt.Sprintf("no drop: all %d counted; after the keys were forgotten the series never went back (it ends once no namespace behind it is left)", n*each),
		Recovery: fmt.Sprintf("goroutines %v→%v and open files %v→%v within %v of the deletion; RSS peak %.1f MiB of the chart's 128 MiB", goroutines, gauge(last, "go_goroutines"), fds, gauge(last, "process_open_fds"), settled.Round(time.Second), rssMax/(1<<20)),
		Figures: map[string]any{"namespaces": n, "drops": n * each, "counted_within_ms": countedIn.Milliseconds(),
			"goroutines_before": goroutines, "goroutines_after": gauge(last, "go_goroutines"),
			"fds_before": fds, "fds_after": gauge(last, "process_open_fds"), "settled_ms": settled.Milliseconds(), "rss_peak_bytes": rssMax},
	})
}
