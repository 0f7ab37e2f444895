package mtucheck_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

func mismatch(t *testing.T, a *testenv.Agent, iface, reason string) (float64, bool) {
	return a.Scrape(t).Value("netsonde_mtu_mismatch", map[string]string{"interface": iface, "reason": reason})
}

func waitValue(t *testing.T, a *testenv.Agent, metric string, labels map[string]string, want float64) {
	t.Helper()
	var got float64
	var ok bool
	testenv.Eventually(t, time.Second, metric+" reaches its value", func() bool {
		got, ok = a.Scrape(t).Value(metric, labels)
		return ok && got == want
	})
}

// A VXLAN device over a 1,500-byte underlay, with a pod's veth behind it,
// and a CNI config that declares 1,450.
func TestOverlayAndPodMismatch(t *testing.T) {
	node := testenv.NewNetns(t)
	peer := testenv.NewNetns(t)
	pod := testenv.NewNetns(t)
	cniDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cniDir, "10-test.conflist"),
		[]byte(`{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"bridge","mtu":1450},{"type":"portmap"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "ip", "link", "add", "u0", "netns", node.Name, "mtu", "1500", "type", "veth", "peer", "name", "u1", "netns", peer.Name)
	node.Exec(t, "ip", "addr", "add", "198.18.60.1/24", "dev", "u0")
	node.Exec(t, "ip", "link", "set", "u0", "up")
	// Not bound to u0 ("dev"): the kernel then refuses an MTU that does not
	// fit, so the misconfiguration this test is about is the unbound VXLAN,
	// whose underlay netsonde finds by the route to its remote.
	node.Exec(t, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", "198.18.60.2", "dstport", "4789")
	node.Exec(t, "ip", "link", "set", "vx0", "mtu", "1500")
	testenv.Run(t, "ip", "link", "add", "p0", "netns", node.Name, "mtu", "1500", "type", "veth", "peer", "name", "eth0", "netns", pod.Name)

	a := testenv.StartAgent(t, node, "--collector.disable-defaults", "--collector.mtucheck", "--mtucheck.cni-dir="+cniDir, "--hostnet.refresh-interval=200ms")

	// 1,500 - 50 (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
	waitValue(t, a, "netsonde_interface_expected_mtu_bytes", map[string]string{"interface": "vx0"}, 1450)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx0", "reason": "exceeds_underlay"}, 1)
	// The pod's veth at 1,500 cannot fit through an overlay that carries
	// 1,450 at most, and differs from the CNI config's 1,450.
	waitValue(t, a, "netsonde_interface_expected_mtu_bytes", map[string]string{"interface": "p0"}, 1450)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "exceeds_overlay"}, 1)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_cni_config"}, 1)
	waitValue(t, a, "netsonde_cni_config_mtu_bytes", map[string]string{"file": filepath.Join(cniDir, "10-test.conflist")}, 1450)
	if _, ok := mismatch(t, a, "u0", "exceeds_overlay"); ok {
		t.Error("the underlay veth must not be judged as a pod interface")
	}

	// Fixing each MTU clears its mismatch within one second.
	node.Exec(t, "ip", "link", "set", "vx0", "mtu", "1450")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx0", "reason": "exceeds_underlay"}, 0)
	node.Exec(t, "ip", "link", "set", "p0", "mtu", "1450")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "exceeds_overlay"}, 0)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_cni_config"}, 0)
	// The host end was fixed, the pod's end (eth0, in the pod's namespace)
	// is still at 1,500: the two ends disagree until it follows.
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_peer"}, 1)
	pod.Exec(t, "ip", "link", "set", "eth0", "mtu", "1450")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_peer"}, 0)
	pod.Exec(t, "ip", "link", "set", "eth0", "mtu", "1400")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_peer"}, 1)
	pod.Exec(t, "ip", "link", "set", "eth0", "mtu", "1450")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_peer"}, 0)

	// Shrinking the underlay raises the tunnel's mismatch again.
	node.Exec(t, "ip", "link", "set", "u0", "mtu", "1400")
	waitValue(t, a, "netsonde_interface_expected_mtu_bytes", map[string]string{"interface": "vx0"}, 1350)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx0", "reason": "exceeds_underlay"}, 1)
}

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

	probeArgs := []string{"--collector.disable-defaults", "--collector.mtucheck", "--pmtu.target=198.18.62.2",
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
