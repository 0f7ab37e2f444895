package netdev_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// startAgent runs the agent in ns with only this collector, reading every
// 100 ms.
func startAgent(t *testing.T, ns *testenv.Netns) *testenv.Agent {
	return testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.netdev", "--netdev.interval=100ms")
}

// sysfsCounter reads an interface's counter as the kernel keeps it, from
// the namespace's own sysfs (ip netns exec mounts it).
func sysfsCounter(t *testing.T, ns *testenv.Netns, dev, file string) float64 {
	t.Helper()
	out := ns.Exec(t, "cat", "/sys/class/net/"+dev+"/"+file)
	v, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		t.Fatalf("%s %s: %q: %v", dev, file, out, err)
	}
	return v
}

var tcDropped = regexp.MustCompile(`\(dropped (\d+), overlimits (\d+) requeues (\d+)\)`)

// tcQdisc is `tc -s qdisc`'s dropped, overlimits and requeues of dev's
// root qdisc.
func tcQdisc(t *testing.T, ns *testenv.Netns, dev string) (dropped, overlimits, requeues float64) {
	t.Helper()
	out := ns.Exec(t, "tc", "-s", "qdisc", "show", "dev", dev, "root")
	m := tcDropped.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no statistics in tc -s qdisc:\n%s", out)
	}
	d, _ := strconv.ParseFloat(m[1], 64)
	o, _ := strconv.ParseFloat(m[2], 64)
	r, _ := strconv.ParseFloat(m[3], 64)
	return d, o, r
}

// waitValue waits for one series to equal want, and to stay there across
// two more reads of the kernel.
func waitValue(t *testing.T, agent *testenv.Agent, metric string, labels map[string]string, want float64) {
	t.Helper()
	var got float64
	var ok bool
	testenv.Eventually(t, 5*time.Second, metric+" equal to the kernel's", func() bool {
		got, ok = agent.Scrape(t).Value(metric, labels)
		return ok && got == want
	})
	time.Sleep(250 * time.Millisecond)
	if got, ok = agent.Scrape(t).Value(metric, labels); !ok || got != want {
		t.Fatalf("%s%v = %v (found %v), then want %v", metric, labels, got, ok, want)
	}
}

// A tbf qdisc of 3,000 bytes at 1 Mbit/s given 1,000 datagrams of 1,000
// bytes at once drops most of them: netsonde_qdisc_drops_total (and
// overlimits, requeues) equal `tc -s qdisc`'s.
func TestQdiscDropsEqualTC(t *testing.T) {
	testenv.RequireCommand(t, "tc")
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "qa0", "qb0", "198.18.10.1/24", "198.18.10.2/24", 0)
	a.Exec(t, "tc", "qdisc", "replace", "dev", "qa0", "root", "tbf", "rate", "1mbit", "burst", "1600", "limit", "3000")
	// The neighbour is known, so no ARP competes for the queue.
	mac := strings.TrimSpace(b.Exec(t, "cat", "/sys/class/net/qb0/address"))
	a.Exec(t, "ip", "neigh", "replace", "198.18.10.2", "lladdr", mac, "dev", "qa0", "nud", "permanent")
	agent := startAgent(t, a)
	labels := map[string]string{"interface": "qa0", "kind": "tbf"}
	waitValue(t, agent, "netsonde_qdisc_drops_total", labels, 0)

	testenv.SendUDP(t, a, "198.18.10.2:9", 1000, 1000, 0)
	// 3,000 bytes at 1 Mbit/s drain in 24 ms.
	time.Sleep(200 * time.Millisecond)
	dropped, overlimits, requeues := tcQdisc(t, a, "qa0")
	if dropped < 900 {
		t.Fatalf("tc counts %v drops of 1,000 datagrams into 3,000 bytes; the test's qdisc is not what it means", dropped)
	}
	waitValue(t, agent, "netsonde_qdisc_drops_total", labels, dropped)
	waitValue(t, agent, "netsonde_qdisc_overlimits_total", labels, overlimits)
	waitValue(t, agent, "netsonde_qdisc_requeues_total", labels, requeues)
	waitValue(t, agent, "netsonde_qdisc_backlog_packets", labels, 0)
	t.Logf("tc: dropped %v, overlimits %v, requeues %v; netsonde the same", dropped, overlimits, requeues)
}

// A veth whose peer is down drops what it is given: 100 datagrams are
// netsonde_interface_drops_total{direction="tx"} +100, equal to the
// kernel's tx_dropped.
func TestTxDropsPeerDown(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "ta0", "tb0", "198.18.11.1/24", "198.18.11.2/24", 0)
	// No IPv6 on the sender: its router solicitations would be drops too.
	a.Exec(t, "sysctl", "-qw", "net.ipv6.conf.ta0.disable_ipv6=1")
	mac := strings.TrimSpace(b.Exec(t, "cat", "/sys/class/net/tb0/address"))
	a.Exec(t, "ip", "neigh", "replace", "198.18.11.2", "lladdr", mac, "dev", "ta0", "nud", "permanent")
	b.Exec(t, "ip", "link", "set", "tb0", "down")
	agent := startAgent(t, a)
	labels := map[string]string{"interface": "ta0", "direction": "tx", "namespace": "", "pod": ""}
	before := sysfsCounter(t, a, "ta0", "statistics/tx_dropped")
	if before > 0 {
		waitValue(t, agent, "netsonde_interface_drops_total", labels, before)
	} else if _, ok := agent.Scrape(t).Value("netsonde_interface_drops_total", labels); ok {
		t.Fatal("a series for 0 drops; want none until the first")
	}

	testenv.SendUDP(t, a, "198.18.11.2:9", 100, 100, 0)
	after := sysfsCounter(t, a, "ta0", "statistics/tx_dropped")
	if after-before != 100 {
		t.Fatalf("kernel tx_dropped +%v for 100 datagrams to a down peer; want +100", after-before)
	}
	waitValue(t, agent, "netsonde_interface_drops_total", labels, after)
	t.Logf("tx_dropped %v → %v; netsonde %v", before, after, after)
}

// Five down/up flaps of a veth's peer: netsonde_interface_carrier_changes_total
// equals the kernel's carrier_changes, 10 more than before.
func TestCarrierChangesFlaps(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "fa0", "fb0", "198.18.12.1/24", "198.18.12.2/24", 0)
	agent := startAgent(t, a)
	labels := map[string]string{"interface": "fa0", "namespace": "", "pod": ""}
	before := sysfsCounter(t, a, "fa0", "carrier_changes")
	waitValue(t, agent, "netsonde_interface_carrier_changes_total", labels, before)
	for range 5 {
		b.Exec(t, "ip", "link", "set", "fb0", "down")
		b.Exec(t, "ip", "link", "set", "fb0", "up")
	}
	after := sysfsCounter(t, a, "fa0", "carrier_changes")
	if after-before != 10 {
		t.Fatalf("kernel carrier_changes +%v for 5 flaps; want +10", after-before)
	}
	waitValue(t, agent, "netsonde_interface_carrier_changes_total", labels, after)
	t.Logf("carrier_changes %v → %v; netsonde %v", before, after, after)
}
