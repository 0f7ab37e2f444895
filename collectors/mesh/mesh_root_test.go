package mesh_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/mesh"
	"github.com/netsonde/netsonde/internal/testenv"
)

// responder answers ICMP echo in ns late: this kernel has no netem, so
// the delay of a path is made by the host at its end. The kernel's own
// answers are switched off in that namespace (icmp_echo_ignore_all is per
// namespace, and the namespace goes with the test). Requests from a
// source in delays wait that long; others are not answered.
func responder(t *testing.T, ns *testenv.Netns, delays map[string]time.Duration) {
	t.Helper()
	ns.Exec(t, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
	var c *icmp.PacketConn
	if err := ns.Do(func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEcho {
				continue
			}
			d, ok := delays[from.(*net.IPAddr).IP.String()]
			if !ok {
				continue
			}
			e := m.Body.(*icmp.Echo)
			reply, _ := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: e.ID, Seq: e.Seq, Data: append([]byte(nil), e.Data...)}}).Marshal(nil)
			time.AfterFunc(d, func() { c.WriteTo(reply, from) })
		}
	}()
}

var pingAvg = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)

// pingMean is ping's own mean RTT to addr from ns, in seconds.
func pingMean(t *testing.T, ns *testenv.Netns, addr string) float64 {
	t.Helper()
	out := ns.Exec(t, "ping", "-n", "-q", "-c", "20", "-i", "0.2", "-W", "1", addr)
	m := pingAvg.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ping %s: no rtt line:\n%s", addr, out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v / 1000
}

// Two namespaces joined by a veth (the underlay) and a VXLAN over it (the
// overlay); the peer answers 10 ms late on the underlay and 30 ms late
// through the overlay. The agent's mean RTT per path is at least the
// responder's lateness and within 0.5-2x of ping's over the same path; a
// peer whose overlay address does not exist
// is counted unreachable on the overlay only; an IPv6 peer is probed too.
// Run with the raw socket (root, no ping_group_range: a new namespace
// allows no group) and with the unprivileged ping socket.
func TestMeshUnderlayOverlay(t *testing.T) {
	for _, mode := range []string{"raw", "ping"} {
		t.Run(mode, func(t *testing.T) { meshPaths(t, mode) })
	}
}

func meshPaths(t *testing.T, mode string) {
	testenv.RequireCommand(t, "ping", "sysctl")
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "ua", "ub", "198.18.97.1/24", "198.18.97.2/24", 0)
	a.Exec(t, "ip", "addr", "add", "fd00:5e::1/64", "dev", "ua", "nodad")
	b.Exec(t, "ip", "addr", "add", "fd00:5e::2/64", "dev", "ub", "nodad")
	for _, side := range []struct {
		ns                       *testenv.Netns
		dev, local, remote, addr string
	}{{a, "ua", "198.18.97.1", "198.18.97.2", "198.18.98.1/24"}, {b, "ub", "198.18.97.2", "198.18.97.1", "198.18.98.2/24"}} {
		side.ns.Exec(t, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", side.local, "remote", side.remote, "dstport", "4789", "dev", side.dev)
		side.ns.Exec(t, "ip", "addr", "add", side.addr, "dev", "vx0")
		side.ns.Exec(t, "ip", "link", "set", "vx0", "up")
	}
	if mode == "ping" {
		// Namespace-local, gone with the namespace.
		a.Exec(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	}
	const under, over = 10 * time.Millisecond, 30 * time.Millisecond
	responder(t, b, map[string]time.Duration{"198.18.97.1": under, "198.18.98.1": over})

	agent := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.mesh", "--mesh.per-peer",
		"--mesh.interval=250ms", "--mesh.timeout=200ms",
		"--mesh.peer=b=198.18.97.2,198.18.98.2",
		"--mesh.peer=c=198.18.97.2,198.18.98.9", // no such overlay host
		"--mesh.peer=d=fd00:5e::2")
	// ping measures during the agent's rounds, not before them: on a
	// shared machine the responder's lateness varies with the load, and
	// both must see the same.
	before := agent.Scrape(t)
	pu, po := make(chan float64, 1), make(chan float64, 1)
	go func() { pu <- pingMean(t, a, "198.18.97.2") }()
	go func() { po <- pingMean(t, a, "198.18.98.2") }()
	pingUnder, pingOver := <-pu, <-po
	t.Logf("ping: underlay %.2f ms, overlay %.2f ms", pingUnder*1000, pingOver*1000)
	m := agent.Scrape(t)

	mean := func(path, peer string) (float64, float64) {
		s := m.Series("netsonde_node_rtt_seconds", map[string]string{"path": path, "peer": peer})
		s0 := before.Series("netsonde_node_rtt_seconds", map[string]string{"path": path, "peer": peer})
		if len(s) != 1 {
			t.Fatalf("rtt %s %s: %d series", path, peer, len(s))
		}
		h := s[0].Metric.GetHistogram()
		n, sum := float64(h.GetSampleCount()), h.GetSampleSum()
		if len(s0) == 1 { // the window ping measured in
			n -= float64(s0[0].Metric.GetHistogram().GetSampleCount())
			sum -= s0[0].Metric.GetHistogram().GetSampleSum()
		}
		if n == 0 {
			t.Fatalf("rtt %s %s: no samples:\n%s", path, peer, agent.Log)
		}
		return sum / n, n
	}
	unreach := func(path, peer string) float64 {
		return m.Sum("netsonde_node_unreachable_total", map[string]string{"path": path, "peer": peer})
	}
	mu, nu := mean("underlay", "b")
	mo, no := mean("overlay", "b")
	t.Logf("netsonde: underlay %.2f ms (%v probes), overlay %.2f ms (%v probes)", mu*1000, nu, mo*1000, no)
	// The responder's lateness is the exact part: no probe can come back
	// sooner. Beside ping the tolerance is wide: the two measure at
	// different moments, and on a machine at load average 30 (fresh-node
	// beside other work) a user-space responder's extra lateness swings
	// by tens of percent between them (0.71x to 1.26x seen). What it
	// still catches is a wrong unit or a timer that is not the packet's.
	for _, c := range []struct {
		path       string
		ours, ping float64
		late       time.Duration
	}{{"underlay", mu, pingUnder, under}, {"overlay", mo, pingOver, over}} {
		if c.ours < c.late.Seconds() {
			t.Errorf("%s: netsonde's mean %.2f ms is below the responder's own lateness %v", c.path, c.ours*1000, c.late)
		}
		if r := c.ours / c.ping; r < 0.5 || r > 2 {
			t.Errorf("%s: netsonde's mean %.2f ms is %.2fx ping's %.2f ms", c.path, c.ours*1000, r, c.ping*1000)
		}
	}
	if u := unreach("underlay", "b") + unreach("overlay", "b"); u != 0 {
		t.Errorf("peer b: %v probes unreachable", u)
	}
	if u := unreach("overlay", "c"); u < 8 {
		t.Errorf("peer c's overlay: %v unreachable, want one per round", u)
	}
	if u := unreach("underlay", "c"); u != 0 {
		t.Errorf("peer c's underlay: %v unreachable, want 0", u)
	}
	if _, n := mean("underlay", "d"); n == 0 || unreach("underlay", "d") != 0 {
		t.Errorf("IPv6 peer d: %v replies, %v unreachable", n, unreach("underlay", "d"))
	}
	raw := strings.Contains(agent.Log.String(), "using a raw socket")
	if raw != (mode == "raw") {
		t.Errorf("mode %s, but raw socket used: %v", mode, raw)
	}
}

// A round waiting for replies that will not come does not hold Close:
// the agent has 2 s from SIGTERM to exit, and --mesh.timeout may be
// longer.
func TestCloseDuringRound(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "ua", "ub", "198.18.97.1/24", "198.18.97.2/24", 0)
	b.Exec(t, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1") // nobody answers
	var c collectors.Collector
	err := a.Do(func() error {
		var err error
		c, err = mesh.Start(context.Background(), collectors.Deps{Logger: slog.New(slog.DiscardHandler), Pods: cluster.None{}},
			mesh.Config{Static: []mesh.Peer{{Name: "b", Underlay: netip.MustParseAddr("198.18.97.2")}},
				Interval: 10 * time.Second, Timeout: 10 * time.Second, MaxPeers: 16})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the first round is waiting
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v during a round", d)
	}
}
