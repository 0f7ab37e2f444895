package fragments_test

import (
	"net"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

func veth(t *testing.T, a, b *testenv.Netns, ifa, ifb, ipa, ipb, mtu string) {
	t.Helper()
	testenv.Run(t, "ip", "link", "add", ifa, "netns", a.Name, "mtu", mtu, "type", "veth", "peer", "name", ifb, "netns", b.Name, "mtu", mtu)
	a.Exec(t, "ip", "addr", "add", ipa, "dev", ifa)
	b.Exec(t, "ip", "addr", "add", ipb, "dev", ifb)
	a.Exec(t, "ip", "link", "set", ifa, "up")
	b.Exec(t, "ip", "link", "set", ifb, "up")
}

func sendUDP(t *testing.T, ns *testenv.Netns, dst string, size, n int, df bool) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		if df {
			raw, _ := c.SyscallConn()
			raw.Control(func(fd uintptr) { setDF(int(fd)) })
		}
		to, _ := net.ResolveUDPAddr("udp4", dst)
		buf := make([]byte, size)
		for i := 0; i < n; i++ {
			if _, err := c.WriteToUDP(buf, to); err != nil && !df {
				return err
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func value(t *testing.T, a *testenv.Agent, metric string, labels map[string]string) float64 {
	v, _ := a.Scrape(t).Value(metric, labels)
	return v
}

func waitExact(t *testing.T, a *testenv.Agent, metric string, labels map[string]string, want float64) {
	t.Helper()
	a.WaitSum(t, metric, labels, want)
}

// A 4,000-byte UDP datagram over a 1,500-byte veth leaves as 3 fragments
// (1,480 + 1,480 + 1,068 bytes of IP payload): 200 datagrams are exactly
// 600 fragments on egress of one end and 600 on ingress of the other, each
// counted by its own agent; the kernel's FragCreates agrees.
func TestFragmentsBothEnds(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	veth(t, a, b, "fa0", "fb0", "198.18.70.1/24", "198.18.70.2/24", "1500")
	agentA := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.fragments")
	agentB := testenv.StartAgent(t, b, "--collector.disable-defaults", "--collector.fragments")
	testenv.Eventually(t, 5*time.Second, "programs attached", func() bool {
		return value(t, agentA, "netsonde_fragments_attached_interfaces", nil) == 1 &&
			value(t, agentB, "netsonde_fragments_attached_interfaces", nil) == 1
	})
	a.Exec(t, "ping", "-c1", "-W2", "198.18.70.2") // resolve ARP first

	sendUDP(t, a, "198.18.70.2:9", 4000, 200, false)
	waitExact(t, agentA, "netsonde_ip_fragments_total", map[string]string{"interface": "fa0", "direction": "egress", "family": "ipv4"}, 600)
	waitExact(t, agentB, "netsonde_ip_fragments_total", map[string]string{"interface": "fb0", "direction": "ingress", "family": "ipv4"}, 600)
	waitExact(t, agentA, "netsonde_ip_fragmentation_events_total", map[string]string{"event": "frag_creates", "family": "ipv4"}, 600)
	waitExact(t, agentB, "netsonde_ip_fragmentation_events_total", map[string]string{"event": "reasm_oks", "family": "ipv4"}, 200)
	if v := value(t, agentA, "netsonde_ip_fragments_total", map[string]string{"interface": "fa0", "direction": "ingress"}); v != 0 {
		t.Errorf("fragments counted on the sender's ingress: %v", v)
	}
}

// A router namespace between A and B with a 1,400-byte link to B: each of
// 50 DF datagrams of 1,500 bytes makes the router send exactly one
// "fragmentation needed" (its ICMP rate limit is off, per namespace), and A
// receives exactly as many.
func TestFragNeededSentAndReceived(t *testing.T) {
	a, r, b := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	veth(t, a, r, "na0", "nr0", "198.18.71.1/24", "198.18.71.2/24", "1500")
	veth(t, r, b, "nr1", "nb0", "198.18.72.1/24", "198.18.72.2/24", "1400")
	a.Exec(t, "ip", "route", "add", "198.18.72.0/24", "via", "198.18.71.2")
	b.Exec(t, "ip", "route", "add", "198.18.71.0/24", "via", "198.18.72.1")
	r.Exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// icmp_ratelimit is per network namespace: this changes only R's.
	r.Exec(t, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
	r.Exec(t, "sysctl", "-qw", "net.ipv4.icmp_msgs_per_sec=100000")
	agentR := testenv.StartAgent(t, r, "--collector.disable-defaults", "--collector.fragments")
	agentA := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.fragments")
	a.Exec(t, "ping", "-c1", "-W2", "198.18.72.2")
	r.Exec(t, "ping", "-c1", "-W2", "198.18.72.2")

	// 1,472 bytes of payload + 28 of headers = 1,500 on the wire.
	sendUDP(t, a, "198.18.72.2:9", 1472, 50, true)
	waitExact(t, agentR, "netsonde_icmp_frag_needed_total", map[string]string{"direction": "sent", "family": "ipv4", "interface": "nr0"}, 50)
	waitExact(t, agentA, "netsonde_icmp_frag_needed_total", map[string]string{"direction": "received", "family": "ipv4", "interface": "na0"}, 50)
}

// Interfaces created after the agent starts get the programs; deleted ones
// lose them and their series.
func TestFollowsInterfaces(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	agentA := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.fragments")
	for _, p := range []string{"x0", "x1", "x2"} {
		testenv.Run(t, "ip", "link", "add", p, "netns", a.Name, "type", "veth", "peer", "name", p+"p", "netns", b.Name)
	}
	testenv.Eventually(t, 5*time.Second, "3 interfaces attached", func() bool {
		return value(t, agentA, "netsonde_fragments_attached_interfaces", nil) == 3
	})
	a.Exec(t, "ip", "link", "del", "x1")
	testenv.Eventually(t, 5*time.Second, "2 interfaces attached", func() bool {
		return value(t, agentA, "netsonde_fragments_attached_interfaces", nil) == 2
	})
	if v := value(t, agentA, "netsonde_fragments_attach_failures_total", nil); v != 0 {
		t.Errorf("attach failures: %v", v)
	}
}

// Without the icmp_send tracepoint, fragments are still counted and the
// missing program is visible.
func TestDegradesWithoutICMPTracepoint(t *testing.T) {
	a := testenv.NewNetns(t)
	agentA := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.fragments", "--fragments.icmp-tracepoint-group=nonexistent")
	m := agentA.Scrape(t)
	if v, _ := m.Value("netsonde_bpf_program_attached", map[string]string{"program": "icmp_send"}); v != 0 {
		t.Error("icmp_send reported attached")
	}
	if v, _ := m.Value("netsonde_collector_up", map[string]string{"collector": "fragments"}); v != 1 {
		t.Error("fragments collector should stay up")
	}
}
