package pmtu_test

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors/pmtu"
	"github.com/netsonde/netsonde/internal/testenv"
)

// targetSeries are the metrics that carry a target label.
var targetSeries = []string{"netsonde_path_mtu_bytes", "netsonde_path_mtu_blackhole",
	"netsonde_path_mtu_probes_total", "netsonde_path_mtu_probe_timestamp_seconds"}

// seriesTargets returns the targets that have any series in a scrape, the
// value of netsonde_pmtu_targets and the collector's series in all; it
// fails the test when more targets have series than the gauge says.
func seriesTargets(t *testing.T, m testenv.Metrics) (targets map[string]bool, gauge float64, series int) {
	t.Helper()
	gauge, ok := m.Value("netsonde_pmtu_targets", nil)
	if !ok {
		t.Fatal("no netsonde_pmtu_targets")
	}
	targets = map[string]bool{}
	series = 1
	for _, name := range targetSeries {
		for _, s := range m.Series(name, nil) {
			targets[s.Labels["target"]] = true
			series++
		}
	}
	if float64(len(targets)) > gauge {
		t.Fatalf("%d targets have series, netsonde_pmtu_targets says %v: %v", len(targets), gauge, slices.Sorted(maps.Keys(targets)))
	}
	return targets, gauge, series
}

// A cluster of 51 nodes in a real kube-apiserver: the agent on node-a
// probes the path MTU to 16 of its 50 peers, exactly the ones rendezvous
// hashing gives it (pmtu.Peers, which the mesh's choice is checked
// against in agent/peers_test.go), and the kernel of the namespace that
// holds the 50 peers' addresses sees probes to those 16 only. Eight of
// them leave the cluster: their series go, eight others come in, still
// 16. With --pmtu.max-peers=4 and one --pmtu.target, 5 targets.
func TestPeersBoundedAgainstRealAPIServer(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	node, peers := testenv.NewNetns(t), testenv.NewNetns(t)
	// The agent's namespace has no default route, only the peers' /24
	// on the veth: no probe to a simulated node can leave the machine.
	if out := node.Exec(t, "ip", "-4", "route", "show", "default"); strings.TrimSpace(out) != "" {
		t.Fatalf("the agent's namespace has a default route: %s", out)
	}
	testenv.Veth(t, node, peers, "n0", "p0", "198.18.100.254/24", "198.18.100.1/24", 0)
	var batch strings.Builder
	addrOf := func(i int) string { return fmt.Sprintf("198.18.100.%d", i+1) }
	for i := 1; i < 50; i++ {
		fmt.Fprintf(&batch, "addr add %s/24 dev p0\n", addrOf(i))
	}
	fmt.Fprintf(&batch, "addr add 198.18.100.200/24 dev p0\n") // an explicit target, not a node
	cmd := peers.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
	// Every probe gets its answer (port unreachable) at once, and the
	// kernel keeps the set of addresses probed.
	peers.Exec(t, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
	peers.Exec(t, "nft", "add table inet seen; add set inet seen probed { type ipv4_addr; flags dynamic; }; "+
		"add chain inet seen pre { type filter hook prerouting priority 0; }; "+
		"add rule inet seen pre udp dport 33434 add @probed { ip daddr }")
	probed := func() map[string]bool {
		out := peers.Exec(t, "nft", "list", "set", "inet", "seen", "probed")
		got := map[string]bool{}
		if _, elems, ok := strings.Cut(out, "elements = {"); ok {
			for _, a := range regexp.MustCompile(`\d+\.\d+\.\d+\.\d+`).FindAllString(elems, -1) {
				got[a] = true
			}
		}
		return got
	}

	k := testenv.StartKubeAPI(t, node)
	var nodes []cluster.Node
	var list strings.Builder
	list.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	item := func(name, addr string) {
		// A Node's status can be set when it is created.
		fmt.Fprintf(&list, "- apiVersion: v1\n  kind: Node\n  metadata: {name: %s}\n  status: {addresses: [{type: InternalIP, address: %q}]}\n", name, addr)
	}
	item("node-a", "198.18.100.254")
	for i := range 50 {
		name := fmt.Sprintf("node-%02d", i)
		item(name, addrOf(i))
		nodes = append(nodes, cluster.Node{Name: name, InternalIP: netip.MustParseAddr(addrOf(i))})
	}
	k.Kubectl(t, list.String(), "create", "-f", "-")
	addrs := func(ns []cluster.Node) map[string]bool {
		out := map[string]bool{}
		for _, n := range ns {
			out[n.InternalIP.String()] = true
		}
		return out
	}

	args := []string{"--kubeconfig=" + k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--collector.pmtu",
		"--pmtu.interval=1s", "--pmtu.timeout=250ms", "--pmtu.gap=10ms"}
	agent := testenv.StartAgent(t, node, args...)
	testenv.Eventually(t, 30*time.Second, "the agent sees 50 peer nodes", func() bool {
		n, _ := agent.Scrape(t).Value("netsonde_kube_peer_nodes", nil)
		return n == 50
	})
	// waitFor waits until the targets with series are want, every one
	// with a path MTU of 1,500 (an answer, not a lost probe) but those in
	// lost, which have no path MTU, checking the gauge against the series
	// at every scrape on the way.
	waitFor := func(what string, want, lost map[string]bool) (series int) {
		t.Helper()
		var got map[string]bool
		var n float64
		defer func() {
			if t.Failed() {
				t.Logf("%s: at the last scrape netsonde_pmtu_targets %v, %d targets with series (want %d): %v",
					what, n, len(got), len(want), slices.Sorted(maps.Keys(got)))
			}
		}()
		testenv.Eventually(t, 30*time.Second, what, func() bool {
			m := agent.Scrape(t)
			got, n, series = seriesTargets(t, m)
			if !maps.Equal(got, want) {
				return false
			}
			for a := range want {
				v, ok := m.Value("netsonde_path_mtu_bytes", map[string]string{"target": a})
				if lost[a] && ok || !lost[a] && v != 1500 {
					return false
				}
			}
			return true
		})
		if n != float64(len(want)) {
			t.Errorf("%s: netsonde_pmtu_targets %v, want %d", what, n, len(want))
		}
		t.Logf("%s: netsonde_pmtu_targets %v, %d targets with series, %d series", what, n, len(got), series)
		return series
	}

	chosen := pmtu.Peers("node-a", nodes, 16)
	if len(chosen) != 16 {
		t.Fatalf("pmtu.Peers chose %d of 50", len(chosen))
	}
	want := addrs(chosen)
	// At the defaults, with every target answering, the collector fills
	// its series budget exactly on a single-stack cluster: half of it,
	// the other half being for the peers' IPv6 addresses.
	if n, budget := waitFor("16 of 50 peers probed", want, nil), pmtu.Spec.Budget(0, 0); n != (budget-1)/2+1 || n != 4*16+1 {
		t.Errorf("%d series, want 4·16 + 1, half the budget's %d", n, budget)
	}
	if got := probed(); !maps.Equal(got, want) {
		t.Errorf("the peers' kernel saw probes to %d addresses, want the 16 chosen: %v", len(got), slices.Sorted(maps.Keys(got)))
	}

	// Half the chosen leave the cluster.
	leaving := map[string]bool{}
	del := []string{"delete", "node"}
	for _, n := range chosen[:8] {
		del = append(del, n.Name)
		leaving[n.Name] = true
	}
	var left []cluster.Node
	for _, n := range nodes {
		if !leaving[n.Name] {
			left = append(left, n)
		}
	}
	nowChosen := pmtu.Peers("node-a", left, 16)
	now := addrs(nowChosen)
	// A round probes its targets in name order. The last one's probes
	// vanish (dropped in the peers' namespace, after the set has seen
	// them), so the first round after the churn lasts seconds after the
	// new targets before it have their results: time for the scrapes to
	// see the leavers' series next to theirs, were those kept until the
	// round's end.
	slow := nowChosen[15].InternalIP.String()
	if !slices.ContainsFunc(nowChosen[:15], func(n cluster.Node) bool { return !want[n.InternalIP.String()] }) {
		t.Fatalf("no new target before the last, %s: the test proves nothing", slow)
	}
	peers.Exec(t, "nft", "add chain inet seen slow { type filter hook prerouting priority 10; }; add rule inet seen slow ip daddr "+slow+" udp dport 33434 drop")
	k.Kubectl(t, "", del...)
	// 15 targets with 4 series, the lost one with its probes and their
	// time, and the gauge.
	if n := waitFor("16 of 42 peers probed after 8 chosen ones left", now, map[string]bool{slow: true}); n != 15*4+2+1 {
		t.Errorf("%d series after the churn, want 63", n)
	}
	everProbed := maps.Clone(want)
	maps.Copy(everProbed, now)
	if len(everProbed) != 24 {
		t.Errorf("%d addresses chosen before and after, want 16 + 8", len(everProbed))
	}
	if got := probed(); !maps.Equal(got, everProbed) {
		t.Errorf("the peers' kernel saw probes to %d addresses, want the %d ever chosen: %v", len(got), len(everProbed), slices.Sorted(maps.Keys(got)))
	}

	testenv.StopAgent(t, agent)
	peers.Exec(t, "nft", "flush chain inet seen slow")
	agent = testenv.StartAgent(t, node, append(args, "--pmtu.max-peers=4", "--pmtu.target=198.18.100.200")...)
	four := addrs(pmtu.Peers("node-a", left, 4))
	four["198.18.100.200"] = true
	waitFor("4 peers and one --pmtu.target", four, nil)
}

// A dual-stack cluster in a real kube-apiserver: of 12 peer nodes, some
// dual-stack (listed IPv6 first, as kubelet may), some IPv6-only, some
// IPv4-only. With --pmtu.max-peers=4 the agent probes the 4 nodes the
// mesh would choose, each at every family it has: its IPv6 InternalIP is
// a target like its IPv4 one, and the peers' kernel sees UDP probes to
// exactly the chosen IPv4 addresses and ICMPv6 echo to exactly the chosen
// IPv6 ones, every one at a path MTU of 1,500.
func TestDualStackPeersAgainstRealAPIServer(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	node, peers := testenv.NewNetns(t), testenv.NewNetns(t)
	for _, ns := range []*testenv.Netns{node, peers} {
		ns.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", "net.ipv4.icmp_ratelimit=0")
	}
	testenv.Veth(t, node, peers, "n0", "p0", "198.18.101.254/24", "198.18.101.253/24", 0)
	node.Exec(t, "ip", "-6", "addr", "add", "fd00:5e::65:fe/112", "dev", "n0", "nodad")
	v4 := func(i int) string { return fmt.Sprintf("198.18.101.%d", i+1) }
	v6 := func(i int) string { return fmt.Sprintf("fd00:5e::65:%x", i+1) }
	var batch strings.Builder
	var nodes []cluster.Node
	var list strings.Builder
	list.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	item := func(name string, addrs ...string) {
		var a []string
		for _, s := range addrs {
			a = append(a, fmt.Sprintf("{type: InternalIP, address: %q}", s))
			nodes = append(nodes, cluster.Node{Name: name, InternalIP: netip.MustParseAddr(s)})
		}
		fmt.Fprintf(&list, "- apiVersion: v1\n  kind: Node\n  metadata: {name: %s}\n  status: {addresses: [%s]}\n", name, strings.Join(a, ", "))
	}
	item("node-a", "198.18.101.254", "fd00:5e::65:fe")
	nodes = nil // the agent's own node is never a peer
	for i := range 12 {
		name := fmt.Sprintf("node-%02d", i)
		switch i % 3 {
		case 0: // dual-stack, IPv6 listed first
			item(name, v6(i), v4(i))
			fmt.Fprintf(&batch, "addr add %s/24 dev p0\naddr add %s/112 dev p0 nodad\n", v4(i), v6(i))
		case 1: // IPv6-only
			item(name, v6(i))
			fmt.Fprintf(&batch, "addr add %s/112 dev p0 nodad\n", v6(i))
		case 2: // IPv4-only
			item(name, v4(i))
			fmt.Fprintf(&batch, "addr add %s/24 dev p0\n", v4(i))
		}
	}
	cmd := peers.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
	peers.Exec(t, "nft", "add table inet seen; "+
		"add set inet seen probed4 { type ipv4_addr; flags dynamic; }; add set inet seen probed6 { type ipv6_addr; flags dynamic; }; "+
		"add chain inet seen pre { type filter hook prerouting priority 0; }; "+
		"add rule inet seen pre udp dport 33434 add @probed4 { ip daddr }; "+
		"add rule inet seen pre icmpv6 type echo-request add @probed6 { ip6 daddr }")
	probed := func() map[string]bool {
		got := map[string]bool{}
		for _, set := range []string{"probed4", "probed6"} {
			out := peers.Exec(t, "nft", "list", "set", "inet", "seen", set)
			if _, elems, ok := strings.Cut(out, "elements = {"); ok {
				elems, _, _ = strings.Cut(elems, "}")
				for _, a := range strings.Split(elems, ",") {
					if a = strings.TrimSpace(a); a != "" {
						got[netip.MustParseAddr(a).String()] = true
					}
				}
			}
		}
		return got
	}

	chosen := pmtu.Peers("node-a", nodes, 4)
	want := map[string]bool{}
	names := map[string]bool{}
	var six, four int
	for _, n := range chosen {
		want[n.InternalIP.String()] = true
		names[n.Name] = true
		if n.InternalIP.Is6() {
			six++
		} else {
			four++
		}
	}
	if len(names) != 4 || six == 0 || four == 0 || len(want) == len(names) {
		t.Fatalf("the chosen 4 nodes (%d addresses: %d IPv4, %d IPv6) are not a dual-stack mix: the test proves nothing", len(want), four, six)
	}
	t.Logf("chosen: %d nodes, %d IPv4 and %d IPv6 addresses", len(names), four, six)

	k := testenv.StartKubeAPI(t, node)
	k.Kubectl(t, list.String(), "create", "-f", "-")
	agent := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--collector.pmtu", "--pmtu.max-peers=4",
		"--pmtu.interval=1s", "--pmtu.timeout=250ms", "--pmtu.gap=10ms")
	var got map[string]bool
	var gauge float64
	testenv.Eventually(t, 60*time.Second, "the chosen nodes' addresses probed, each at 1,500", func() bool {
		m := agent.Scrape(t)
		got, gauge, _ = seriesTargets(t, m)
		if !maps.Equal(got, want) || gauge != float64(len(want)) {
			return false
		}
		for a := range want {
			if v, _ := m.Value("netsonde_path_mtu_bytes", map[string]string{"target": a}); v != 1500 {
				return false
			}
		}
		return true
	})
	if seen := probed(); !maps.Equal(seen, want) {
		t.Errorf("the peers' kernel saw probes to %v, want the chosen %v", slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(want)))
	}
}
