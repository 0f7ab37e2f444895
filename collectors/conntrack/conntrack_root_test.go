package conntrack_test

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// conntrackS sums `conntrack -S` over CPUs, by statistic, in ns.
func conntrackS(t *testing.T, ns *testenv.Netns) map[string]float64 {
	t.Helper()
	out := ns.Exec(t, "conntrack", "-S")
	sums := map[string]float64{}
	for _, m := range regexp.MustCompile(`(\w+)=(\d+)`).FindAllStringSubmatch(out, -1) {
		if m[1] == "cpu" {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		sums[m[1]] += v
	}
	return sums
}

// The classic outage: a full table. In a namespace whose output is
// conntracked, with nf_conntrack_max lowered to 200 for the test, 300 new
// UDP flows go out: the table holds exactly 200, every refused flow is
// counted (drop, or early_drop where the kernel evicted instead), and every
// statistic netsonde exports equals what `conntrack -S` and `-C` print.
func TestTableFullDropsCountedExactly(t *testing.T) {
	testenv.RequireCommand(t, "conntrack", "nft")
	const limit, flows = 200, 300
	src := testenv.NewNetns(t)
	dst := testenv.NewNetns(t)
	ifs, ifd := testenv.RandomName("ca"), testenv.RandomName("cb")
	testenv.Run(t, "ip", "link", "add", ifs, "netns", src.Name, "type", "veth", "peer", "name", ifd, "netns", dst.Name)
	src.Exec(t, "ip", "addr", "add", "198.18.40.1/24", "dev", ifs)
	dst.Exec(t, "ip", "addr", "add", "198.18.40.2/24", "dev", ifd)
	src.Exec(t, "ip", "link", "set", ifs, "up")
	dst.Exec(t, "ip", "link", "set", ifd, "up")
	// Conntrack only the test's flows: the agent's scrapes over loopback
	// would otherwise need table entries too, and be refused once it is full.
	src.Exec(t, "nft", "add table inet nsdct; "+
		"add chain inet nsdct rawout { type filter hook output priority -300; }; add rule inet nsdct rawout oif lo notrack; "+
		"add chain inet nsdct rawpre { type filter hook prerouting priority -300; }; add rule inet nsdct rawpre iif lo notrack; "+
		"add chain inet nsdct out { type filter hook output priority 0; }; add rule inet nsdct out ct state new counter accept")

	// The receiver drops the datagrams quietly: a port unreachable coming
	// back removes the unreplied entry it answers, and the table would
	// shrink while the test reads it.
	dst.Exec(t, "nft", "add table inet quiet; add chain inet quiet in { type filter hook input priority 0; }; add rule inet quiet in udp dport 9 drop")
	a := testenv.StartAgent(t, src, "--collector.disable-defaults", "--collector.conntrack", "--conntrack.breakdown-interval=10s")
	before := conntrackS(t, src)
	m := a.Scrape(t)
	for stat, v := range before {
		if got, ok := m.Value("netsonde_conntrack_events_total", map[string]string{"event": stat}); !ok || got != v {
			t.Errorf("before: events_total{event=%q} = %v (found %v), conntrack -S says %v", stat, got, ok, v)
		}
	}

	testenv.SetSysctl(t, "net.netfilter.nf_conntrack_max", strconv.Itoa(limit))
	err := src.Do(func() error {
		dst := &net.UDPAddr{IP: net.ParseIP("198.18.40.2"), Port: 9}
		for i := 0; i < flows; i++ {
			// Each flow from its own source port, chosen: ephemeral
			// ports may repeat, and a repeated tuple is no new flow.
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("198.18.40.1"), Port: 20000 + i})
			if err != nil {
				return err
			}
			// A refused flow's datagram is dropped; the send may say so.
			c.WriteTo([]byte("flow"), dst)
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	after := conntrackS(t, src)
	count := strings.TrimSpace(src.Exec(t, "conntrack", "-C"))
	m = a.Scrape(t)
	entries, _ := m.Value("netsonde_conntrack_entries", nil)
	lim, _ := m.Value("netsonde_conntrack_entries_limit", nil)
	if entries != limit || lim != limit || count != fmt.Sprint(limit) {
		t.Errorf("entries = %v, limit = %v, conntrack -C = %s; want all %d", entries, lim, count, limit)
	}
	for stat, v := range after {
		if got, ok := m.Value("netsonde_conntrack_events_total", map[string]string{"event": stat}); !ok || got != v {
			t.Errorf("after: events_total{event=%q} = %v (found %v), conntrack -S says %v", stat, got, ok, v)
		}
	}
	dropped := after["drop"] - before["drop"]
	evicted := after["early_drop"] - before["early_drop"]
	if dropped+evicted != flows-limit || dropped == 0 {
		t.Errorf("drop rose by %v and early_drop by %v; want them to add up to the %d flows that did not fit", dropped, evicted, flows-limit)
	}
	t.Logf("refused: drop +%v, early_drop +%v; before %v after %v", dropped, evicted, before, after)

	// Who fills it: the breakdown dump names the one source and all its UDP
	// entries (it runs at start, then every 10 s). Not necessarily 200: a
	// few seconds after the table passes 95% full, the kernel's conntrack
	// GC evicts unreplied entries until it is below (200 -> 189 here), so
	// the yardstick is `conntrack -C` at the time of the dump.
	var top, udp, now float64
	deadline := time.Now().Add(25 * time.Second) // two dump periods, with room
	for time.Now().Before(deadline) {
		m := a.Scrape(t)
		top, _ = m.Value("netsonde_conntrack_top_entries", map[string]string{"source": "198.18.40.1"})
		udp, _ = m.Value("netsonde_conntrack_state_entries", map[string]string{"protocol": "udp", "state": ""})
		now, _ = strconv.ParseFloat(strings.TrimSpace(src.Exec(t, "conntrack", "-C")), 64)
		if top == now && udp == now && now >= limit*9/10 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("breakdown: 198.18.40.1 holds %v entries, UDP %v; conntrack -C says %v", top, udp, now)
}

// A breakdown interval below the floor is refused with a reason, and the
// agent keeps serving.
func TestBreakdownIntervalFloor(t *testing.T) {
	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.conntrack", "--collector.mtu", "--conntrack.breakdown-interval=1s")
	m := a.Scrape(t)
	if v, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "conntrack", "reason": "bad_flag"}); !ok || v != 0 {
		t.Fatalf("conntrack should be down with bad_flag:\n%s", a.Log)
	}
	if v, _ := m.Value("netsonde_collector_up", map[string]string{"collector": "mtu"}); v != 1 {
		t.Fatal("mtu should be up")
	}
}
