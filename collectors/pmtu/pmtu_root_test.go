package pmtu_test

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// Three namespaces A—R—B, the R—B link at 1,400: the path MTU from A to B is
// exactly 1,400, within the stated probe budget; with R dropping its ICMP
// errors, the same 1,400 is found by search and the black hole is flagged.
func TestPathMTUProbe(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	a, r, b := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Run(t, "ip", "link", "add", "a0", "netns", a.Name, "type", "veth", "peer", "name", "r0", "netns", r.Name)
	testenv.Run(t, "ip", "link", "add", "r1", "netns", r.Name, "mtu", "1400", "type", "veth", "peer", "name", "b0", "netns", b.Name, "mtu", "1400")
	a.Exec(t, "ip", "addr", "add", "198.18.61.1/24", "dev", "a0")
	r.Exec(t, "ip", "addr", "add", "198.18.61.2/24", "dev", "r0")
	r.Exec(t, "ip", "addr", "add", "198.18.62.1/24", "dev", "r1")
	b.Exec(t, "ip", "addr", "add", "198.18.62.2/24", "dev", "b0")
	for ns, ifs := range map[*testenv.Netns][]string{a: {"a0"}, r: {"r0", "r1"}, b: {"b0"}} {
		for _, i := range ifs {
			ns.Exec(t, "ip", "link", "set", i, "up")
		}
		// Per-namespace settings: ICMP errors are not rate-limited here, so
		// every probe gets its answer and the count below is exact.
		ns.Exec(t, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
	}
	r.Exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	a.Exec(t, "ip", "route", "add", "198.18.62.0/24", "via", "198.18.61.2")
	b.Exec(t, "ip", "route", "add", "198.18.61.0/24", "via", "198.18.62.1")
	// Count every probe R forwards or refuses.
	r.Exec(t, "nft", "add table inet probes; add chain inet probes countpre { type filter hook prerouting priority 0; }; add rule inet probes countpre ip daddr 198.18.62.2 udp dport 33434 counter")

	probeArgs := []string{"--collector.disable-defaults", "--collector.pmtu", "--pmtu.target=198.18.62.2",
		"--pmtu.interval=1h", "--pmtu.gap=10ms", "--pmtu.timeout=1s"} // 1 s: a loaded CI machine can take longer than 300 ms to route an ICMP error
	forwarded := func() float64 {
		out := r.Exec(t, "nft", "list", "chain", "inet", "probes", "countpre")
		c := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
		n, _ := strconv.Atoi(c[1])
		return float64(n)
	}
	run := func() (pmtu, blackhole, probes, counted float64) {
		t.Helper()
		before := forwarded()
		agent := testenv.StartAgent(t, a, probeArgs...)
		testenv.Eventually(t, 40*time.Second, "a probe run finished", func() bool {
			_, ok := agent.Scrape(t).Value("netsonde_path_mtu_probe_timestamp_seconds", map[string]string{"target": "198.18.62.2"})
			return ok
		})
		m := agent.Scrape(t)
		target := map[string]string{"target": "198.18.62.2"}
		pmtu, _ = m.Value("netsonde_path_mtu_bytes", target)
		blackhole, _ = m.Value("netsonde_path_mtu_blackhole", target)
		probes, _ = m.Value("netsonde_path_mtu_probes_total", target)
		testenv.StopAgent(t, agent)
		return pmtu, blackhole, probes, forwarded() - before
	}

	pmtu, bh, probes, counted := run()
	if pmtu != 1400 || bh != 0 {
		t.Errorf("path MTU %v, black hole %v; want 1400 and 0", pmtu, bh)
	}
	if probes != counted || probes > 16 {
		t.Errorf("agent says %v probes, R counted %v; budget is 16 per run", probes, counted)
	}
	t.Logf("with ICMP: %v probes", probes)

	r.Exec(t, "nft", "add table inet bh; add chain inet bh out { type filter hook output priority 0; }; add rule inet bh out icmp type destination-unreachable drop")
	pmtu, bh, probes, counted = run()
	if pmtu != 1400 || bh != 1 {
		t.Errorf("black hole: path MTU %v, flag %v; want 1400 and 1", pmtu, bh)
	}
	if probes != counted || probes > 16 {
		t.Errorf("black hole: agent says %v probes, R counted %v; budget is 16 per run", probes, counted)
	}
	t.Logf("black hole: %v probes", probes)
}
