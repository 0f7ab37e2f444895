package pmtu

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// TestGoldenMetrics: three path-MTU results as the prober keeps them: the
// peer node's underlay address at 1,500, its overlay address at 1,400 with
// a black hole above it, and an address that never answered: the three
// targets of the round.
func TestGoldenMetrics(t *testing.T) {
	view := golden.Node()
	deps := collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view, Clock: &golden.Clock{T: golden.Now}}
	p := &prober{deps: deps, results: map[netip.Addr]*pathResult{
		golden.PeerNode.InternalIP:          {pmtu: 1500, probes: 9, finished: golden.Now},
		golden.PeerNode.OverlayIP:           {pmtu: 1400, blackhole: true, probes: 16, finished: golden.Now},
		netip.MustParseAddr("192.168.1.99"): {probes: 16, finished: golden.Now},
	}, ntarget: 3}
	golden.Check(t, p)
}
