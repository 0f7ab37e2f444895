package pmtu

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// TestGoldenMetrics: four path-MTU results as the prober keeps them: the
// peer node's underlay address at 1,500, its overlay address at 1,400 with
// a black hole above it, its IPv6 address at IPv6's minimum, 1,280 (the
// label as Go prints the address), and an address that never answered:
// the four targets of the round.
func TestGoldenMetrics(t *testing.T) {
	view := golden.Node()
	deps := collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view, Clock: &golden.Clock{T: golden.Now}}
	p := &prober{deps: deps, results: map[netip.Addr]*pathResult{
		golden.PeerNode.InternalIP:              {pmtu: 1500, probes: 9, finished: golden.Now},
		golden.PeerNode.OverlayIP:               {pmtu: 1400, blackhole: true, probes: 16, finished: golden.Now},
		netip.MustParseAddr("192.168.1.99"):     {probes: 16, finished: golden.Now},
		netip.MustParseAddr("2001:db8:0:0::12"): {pmtu: 1280, probes: 2, finished: golden.Now},
	}, ntarget: 4}
	golden.Check(t, p)
}
