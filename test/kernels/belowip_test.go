package kernels_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestBelowIPCounters: the netdev collector's counters against the
// kernel's own on this kernel: a tbf qdisc's drops (tc -s qdisc), a veth's
// tx drops to a down peer (tx_dropped) and carrier changes after five
// flaps (carrier_changes).
func TestBelowIPCounters(t *testing.T) {
	guest(t)
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "ka0", "kb0", "198.18.40.1/24", "198.18.40.2/24", 0)
	a.Exec(t, "sysctl", "-qw", "net.ipv6.conf.ka0.disable_ipv6=1")
	mac := strings.TrimSpace(b.Exec(t, "cat", "/sys/class/net/kb0/address"))
	a.Exec(t, "ip", "neigh", "replace", "198.18.40.2", "lladdr", mac, "dev", "ka0", "nud", "permanent")
	a.Exec(t, "tc", "qdisc", "replace", "dev", "ka0", "root", "tbf", "rate", "1mbit", "burst", "1600", "limit", "3000")
	agent := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.netdev", "--netdev.interval=100ms")
	counter := func(file string) float64 {
		v, err := strconv.ParseFloat(strings.TrimSpace(a.Exec(t, "cat", "/sys/class/net/ka0/"+file)), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	equal := func(metric string, labels map[string]string, want float64) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, metric+" equal to the kernel's", func() bool {
			v, ok := agent.Scrape(t).Value(metric, labels)
			return ok && v == want
		})
	}

	testenv.SendUDP(t, a, "198.18.40.2:9", 1000, 1000, 0)
	time.Sleep(200 * time.Millisecond)
	m := regexp.MustCompile(`\(dropped (\d+),`).FindStringSubmatch(a.Exec(t, "tc", "-s", "qdisc", "show", "dev", "ka0", "root"))
	if m == nil {
		t.Fatal("no drops in tc -s qdisc")
	}
	dropped, _ := strconv.ParseFloat(m[1], 64)
	if dropped < 900 {
		t.Fatalf("tc counts %v drops of 1,000 datagrams into 3,000 bytes", dropped)
	}
	equal("netsonde_qdisc_drops_total", map[string]string{"interface": "ka0", "kind": "tbf"}, dropped)

	carrier := counter("carrier_changes")
	for range 5 {
		b.Exec(t, "ip", "link", "set", "kb0", "down")
		b.Exec(t, "ip", "link", "set", "kb0", "up")
	}
	if got := counter("carrier_changes"); got != carrier+10 {
		t.Fatalf("carrier_changes %v after 5 flaps from %v", got, carrier)
	}
	equal("netsonde_interface_carrier_changes_total", map[string]string{"interface": "ka0"}, carrier+10)

	// The default qdisc (noqueue) comes back while the carrier is up:
	// with it down the kernel holds noop, which drops as a qdisc.
	a.Exec(t, "tc", "qdisc", "del", "dev", "ka0", "root")
	b.Exec(t, "ip", "link", "set", "kb0", "down")
	// The kernel takes the carrier loss in (operstate, and on 6.1 the
	// noop qdisc) in its linkwatch work, up to a second later: datagrams
	// sent meanwhile reach the driver and count as tx_dropped. Sent after
	// it, all go one way (fresh-node under load saw +41 of 100 on 6.1).
	testenv.Eventually(t, 10*time.Second, "ka0's operstate down after its peer's", func() bool {
		return strings.TrimSpace(a.Exec(t, "cat", "/sys/class/net/ka0/operstate")) != "up"
	})
	before := counter("statistics/tx_dropped")
	testenv.SendUDP(t, a, "198.18.40.2:9", 100, 100, 0)
	after := counter("statistics/tx_dropped")
	switch {
	case after == before:
		// 6.1 holds the noop qdisc while the carrier is down: the
		// datagrams never reach the driver, and no counter of the
		// interface has them. None is exported.
		time.Sleep(300 * time.Millisecond)
		if _, ok := agent.Scrape(t).Value("netsonde_interface_drops_total", map[string]string{"interface": "ka0", "direction": "tx"}); ok {
			t.Fatal("a tx drops series for tx_dropped 0")
		}
		t.Log("tx_dropped stays 0 on this kernel (the noop qdisc while the carrier is down): no series, as the kernel")
	case after-before != 100:
		t.Fatalf("tx_dropped +%v for 100 datagrams to a down peer", after-before)
	default:
		equal("netsonde_interface_drops_total", map[string]string{"interface": "ka0", "direction": "tx"}, after)
	}
	t.Logf("qdisc drops %v, carrier changes %v, tx drops %v: netsonde the same", dropped, carrier+10, after)
}
