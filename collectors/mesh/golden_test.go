package mesh

import (
	"sort"
	"testing"

	"github.com/netsonde/netsonde/internal/golden"
)

// fixedSeries is a path's series after the given RTT samples (seconds)
// and unreachable probes, bucketed as round does.
func fixedSeries(rtts []float64, unreachable uint64) *series {
	s := &series{counts: make([]uint64, len(Buckets)+1), unreachable: unreachable, probes: uint64(len(rtts)) + unreachable}
	for _, v := range rtts {
		s.counts[sort.SearchFloat64s(Buckets, v)]++
		s.sum += v
		s.n++
	}
	return s
}

// TestGoldenMetrics: four rounds to three peers (12 probes a path), the
// underlay answering every probe, mostly under half a millisecond, the
// overlay (VXLAN) a little slower and 3 probes unanswered; a sample on a
// bucket edge (250 µs, 500 µs) counts in that bucket.
func TestGoldenMetrics(t *testing.T) {
	underlay := fixedSeries([]float64{
		0.000182, 0.000214, 0.00025, 0.000263, 0.000291, 0.000318, 0.000347, 0.000402, 0.000455, 0.000611, 0.00087, 0.0021,
	}, 0)
	overlay := fixedSeries([]float64{
		0.000297, 0.000334, 0.000381, 0.000426, 0.0005, 0.000588, 0.000702, 0.00119, 0.0034,
	}, 3)
	c := &collector{peers: 3, rtt: rttDesc(false), unreach: unreachableDesc(false), probes: probesDesc(false),
		series: map[seriesKey]*series{{path: PathUnderlay}: underlay, {path: PathOverlay}: overlay}}
	golden.Check(t, c)
}

// TestGoldenMetricsPerPeer: with --mesh.per-peer, two peers' series on
// each path, under their peer label.
func TestGoldenMetricsPerPeer(t *testing.T) {
	c := &collector{cfg: Config{PerPeer: true}, peers: 2, rtt: rttDesc(true), unreach: unreachableDesc(true), probes: probesDesc(true),
		series: map[seriesKey]*series{
			{path: PathUnderlay, peer: "node-b"}: fixedSeries([]float64{0.000182, 0.000214, 0.00025}, 0),
			{path: PathUnderlay, peer: "node-c"}: fixedSeries([]float64{0.000402, 0.0021}, 1),
			{path: PathOverlay, peer: "node-b"}:  fixedSeries([]float64{0.000297, 0.000588}, 1),
			{path: PathOverlay, peer: "node-c"}:  fixedSeries([]float64{0.0034}, 2),
		}}
	golden.CompareFile(t, "testdata/golden-per-peer.prom", golden.Render(t, c))
}
