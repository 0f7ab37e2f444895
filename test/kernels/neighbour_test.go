package kernels_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestNeighbourTableFull fills the ARP table. Its thresholds and counters
// are the kernel's, shared by every namespace on the machine: lowered on
// the host, they made the kernel refuse other tests' neighbours (a
// fragments test lost 2 of 300 datagrams), and other tests' neighbours
// came and went in the room this test counted on. The VM's kernel has
// nothing else, so the numbers are exact: with the limit at 16 entries
// above today's, one datagram to each of 64 addresses nobody has makes
// the kernel refuse the neighbours it has no room for. Each refusal drops
// its datagram (SKB_DROP_REASON_NEIGH_CREATEFAIL) with ENOBUFS, which UDP
// counts in the sending namespace's own UdpSndbufErrors rather than
// returning it. netsonde's table_full equals those refusals and
// `ip -s ntable`'s table_fulls; once the accepted neighbours' ARPs go
// unanswered, its resolution failures equal them.
func TestNeighbourTableFull(t *testing.T) {
	guest(t)
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "na0", "nb0", "198.18.20.1/24", "198.18.20.254/24", 0)
	a.Exec(t, "ip", "route", "add", "198.18.24.0/24", "dev", "na0")
	agent := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.neighbour", "--neighbour.interval=100ms")
	v4 := map[string]string{"family": "ipv4"}
	// netsonde against `ip -s ntable` read just before and after the
	// scrape: the kernel may refuse more after the datagrams (on 6.1, the
	// scrape's own connection over loopback, whose neighbour the forced
	// GC evicted to make room).
	equal := func(metric, stat string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, metric+" equal to ip -s ntable's "+stat, func() bool {
			k := testenv.Ntable(t, "arp_cache")[stat]
			v, ok := agent.Scrape(t).Value(metric, v4)
			return ok && v == k && testenv.Ntable(t, "arp_cache")[stat] == k
		})
	}
	before := testenv.Ntable(t, "arp_cache")
	equal("netsonde_neighbour_entries", "entries")
	equal("netsonde_neighbour_table_full_total", "table_fulls")
	equal("netsonde_neighbour_resolution_failures_total", "res_failed")

	limit := before["entries"] + 16
	for _, k := range []string{"gc_thresh1", "gc_thresh2", "gc_thresh3"} {
		testenv.SetSysctl(t, "net.ipv4.neigh.default."+k, strconv.Itoa(int(limit)))
	}
	testenv.Eventually(t, 10*time.Second, "the limit seen", func() bool {
		v, ok := agent.Scrape(t).Value("netsonde_neighbour_entries_limit", v4)
		return ok && v == limit
	})

	// Sent within a second: an unanswered ARP keeps its entry
	// incomplete for 3 s (3 probes, 1 s apart), and the kernel's forced
	// GC frees no incomplete entry.
	const sent = 64
	sndbuf := testenv.Netstat(t, a, "snmp", "Udp", "SndbufErrors")
	if err := a.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for i := range sent {
			if err := unix.Sendto(fd, []byte{0}, 0, &unix.SockaddrInet4{Addr: [4]byte{198, 18, 24, byte(10 + i)}, Port: 9}); err != nil {
				return fmt.Errorf("send to 198.18.24.%d: %w", 10+i, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	refused := testenv.Netstat(t, a, "snmp", "Udp", "SndbufErrors") - sndbuf
	full := testenv.Ntable(t, "arp_cache")
	if refused < 1 || full["table_fulls"]-before["table_fulls"] != refused {
		t.Fatalf("%v of %d datagrams refused (UdpSndbufErrors); ip -s ntable: table_fulls %v → %v with the limit at %v",
			refused, sent, before["table_fulls"], full["table_fulls"], limit)
	}
	equal("netsonde_neighbour_table_full_total", "table_fulls")

	accepted := sent - refused
	testenv.Eventually(t, 10*time.Second, "the accepted neighbours' resolution failed", func() bool {
		return testenv.Ntable(t, "arp_cache")["res_failed"] == before["res_failed"]+accepted
	})
	equal("netsonde_neighbour_resolution_failures_total", "res_failed")
	equal("netsonde_neighbour_entries", "entries")
	t.Logf("limit %v (entries %v + 16): %v of %d refused = table_fulls +%v; %v accepted = res_failed +%v; netsonde = ip -s ntable %v",
		limit, before["entries"], refused, sent, refused, accepted, accepted, testenv.Ntable(t, "arp_cache"))
}
