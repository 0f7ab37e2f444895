package pmtu_test

import (
	"testing"

	"github.com/netsonde/netsonde/internal/testenv"
)

// A — R — B over IPv6 on /112s of fd00:5e::/64, the R–B hop at IPv6's
// minimum MTU, 1,280. The agent in A probing B finds 1,280, as `tracepath
// -6` does, from R's packet-too-big in exactly two probes (1,500 refused,
// 1,280 answered). With R's output dropping ICMPv6 packet-too-big, the
// next run finds the same 1,280 by search alone, flags the black hole,
// and R has dropped one packet-too-big for each of the 8 probes above
// 1,280 (9 probes in all: 1,500, 1,390, 1,335, 1,307, 1,293, 1,286, 1,283,
// 1,281, 1,280).
func TestPathMTUProbeIPv6(t *testing.T) {
	testenv.RequireCommand(t, "nft", "tracepath")
	p := testenv.NewPath6(t, 1280)
	p.CountEchoRequests(t)
	counted := func() float64 { return float64(p.EchoRequests(t)) }
	run := func() (pmtu, blackhole, probes, seen float64) {
		t.Helper()
		before := counted()
		r := testenv.ProbePathMTU(t, p.A, testenv.Path6B)
		return r.PMTU, r.Blackhole, r.Probes, counted() - before
	}

	pmtu, bh, probes, seen := run()
	tp := testenv.Tracepath6(t, p.A, testenv.Path6B)
	t.Logf("with packet-too-big: path MTU %v, black hole %v, %v probes (R saw %v); tracepath -6: pmtu %d", pmtu, bh, probes, seen, tp)
	if pmtu != 1280 || bh != 0 {
		t.Errorf("path MTU %v, black hole %v; want 1280 and 0", pmtu, bh)
	}
	if tp != int(pmtu) {
		t.Errorf("tracepath -6 says pmtu %d, the agent %v", tp, pmtu)
	}
	if probes != 2 || seen != 2 {
		t.Errorf("agent says %v probes, R counted %v; want 2 (1,500 refused by packet-too-big, 1,280 answered)", probes, seen)
	}

	p.DropPacketTooBig(t)
	pmtu, bh, probes, seen = run()
	dropped := p.PacketTooBigDropped(t)
	t.Logf("black hole: path MTU %v, black hole %v, %v probes (R saw %v), %d packet-too-big dropped", pmtu, bh, probes, seen, dropped)
	if pmtu != 1280 || bh != 1 {
		t.Errorf("black hole: path MTU %v, flag %v; want 1280 and 1", pmtu, bh)
	}
	if probes != 9 || seen != 9 {
		t.Errorf("black hole: agent says %v probes, R counted %v; want 9", probes, seen)
	}
	if dropped != 8 {
		t.Errorf("R dropped %d packet-too-big, want one per probe above 1,280: 8", dropped)
	}
}

// The IPv6 probe's two sockets, on the same A — R — B at 1,280, with an
// agent that has no CAP_NET_RAW. Where net.ipv4.ping_group_range (which
// governs ICMPv6 too) admits the agent, the ping socket does what the raw
// one does: 1,280 in 2 probes, and with packet-too-big dropped the black
// hole in 9. Where it does not (the kernel's default, "1 0"), the agent
// can open neither: it sends nothing (R counts 0 echo requests), counts
// no probe and reports no path MTU, rather than a target that never
// answers.
func TestPathMTUProbeIPv6Sockets(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	p := testenv.NewPath6(t, 1280)
	p.CountEchoRequests(t)
	counted := func() int { return p.EchoRequests(t) }

	r := testenv.ProbePathMTUWithoutNetRaw(t, p.A, testenv.Path6B)
	t.Logf("no socket: %+v, R saw %d", r, counted())
	if r != (testenv.PathMTU{}) || counted() != 0 {
		t.Errorf("without NET_RAW or a ping socket: %+v, R saw %d echo requests; want nothing sent, counted or reported", r, counted())
	}

	p.A.Exec(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 0") // root's group: a per-namespace setting
	r = testenv.ProbePathMTUWithoutNetRaw(t, p.A, testenv.Path6B)
	t.Logf("ping socket: %+v, R saw %d", r, counted())
	if r != (testenv.PathMTU{PMTU: 1280, Probes: 2}) || counted() != 2 {
		t.Errorf("ping socket: %+v, R saw %d; want 1280, no black hole, 2 probes", r, counted())
	}
	p.DropPacketTooBig(t)
	r = testenv.ProbePathMTUWithoutNetRaw(t, p.A, testenv.Path6B)
	t.Logf("ping socket, black hole: %+v, R saw %d, %d packet-too-big dropped", r, counted(), p.PacketTooBigDropped(t))
	if r != (testenv.PathMTU{PMTU: 1280, Blackhole: 1, Probes: 9}) || counted() != 11 || p.PacketTooBigDropped(t) != 8 {
		t.Errorf("ping socket, black hole: %+v, R saw %d in all, %d packet-too-big dropped; want 1280, the black hole, 9 probes (11 in all), 8 dropped",
			r, counted(), p.PacketTooBigDropped(t))
	}
}
