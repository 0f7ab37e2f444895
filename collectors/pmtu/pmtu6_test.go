package pmtu_test

import (
	"regexp"
	"strconv"
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
	// Count every echo request R forwards or refuses.
	p.R.Exec(t, "nft", "add table inet probes; add chain inet probes countpre { type filter hook prerouting priority 0; }; "+
		"add rule inet probes countpre ip6 daddr "+testenv.Path6B+" icmpv6 type echo-request counter")
	counted := func() float64 {
		out := p.R.Exec(t, "nft", "list", "chain", "inet", "probes", "countpre")
		c := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
		n, _ := strconv.Atoi(c[1])
		return float64(n)
	}
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
