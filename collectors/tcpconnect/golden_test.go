package tcpconnect

import (
	"log/slog"
	"testing"
	"time"

	bpftc "github.com/netsonde/netsonde/bpf/tcpconnect"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// fixedCounter serves fixed counts.
type fixedCounter struct {
	stats    map[uint64]bpftc.Stats
	inflight map[uint64]int
	forgot   []uint64
}

func (f *fixedCounter) Hooks() map[string]string {
	return map[string]string{bpftc.ProgramSetState: "tp_btf", bpftc.ProgramSendReset: "tp_btf",
		bpftc.ProgramReceiveReset: "raw_tp", bpftc.ProgramErrorReport: "none"}
}
func (f *fixedCounter) Read() (map[uint64]bpftc.Stats, error) { return f.stats, nil }
func (f *fixedCounter) InFlight() (map[uint64]int, error)     { return f.inflight, nil }
func (f *fixedCounter) Full() (map[string]uint64, error) {
	return map[string]uint64{"tcpconnect_stats": 4, "tcpconnect_inflight": 0}, nil
}
func (f *fixedCounter) Forget(netns []uint64) { f.forgot = append(f.forgot, netns...) }
func (f *fixedCounter) Close() error          { return nil }

// stats makes distinct counts from a seed.
func stats(n uint64) bpftc.Stats {
	s := bpftc.Stats{
		Connects:  [5]uint64{100 * n, 3 * n, 2 * n, n, 4 * n},
		DurSumNs:  n * 1_234_000_000,
		Resets:    [2]uint64{5 * n, 4 * n},
		SrttSumUs: n * 56_789,
	}
	for i := range s.DurBuckets {
		s.DurBuckets[i] = n * uint64(i+1)
	}
	for i := range s.SrttBuckets {
		s.SrttBuckets[i] = n * uint64(10-i)
	}
	return s
}

// TestGoldenMetrics: connections of the agent's namespace, the pod's
// (named after it), one no pod owns and one the view has not met (both
// summed into the host's), and the overflow slot.
func TestGoldenMetrics(t *testing.T) {
	f := &fixedCounter{
		stats: map[uint64]bpftc.Stats{
			golden.OwnNetns:     stats(1),
			golden.PodNetns:     stats(2),
			golden.OtherNetns:   stats(3),
			golden.UnknownNetns: stats(4),
			bpftc.OverflowNetns: stats(5),
		},
		inflight: map[uint64]int{golden.OwnNetns: 2, golden.PodNetns: 1, golden.OtherNetns: 3, bpftc.OverflowNetns: 4},
	}
	view := golden.Node()
	c := &collector{deps: collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view, Clock: &golden.Clock{T: golden.Now}},
		c: f, own: golden.OwnNetns, forgetAfter: 2 * time.Minute, retired: map[podKey]*bpftc.Stats{}}
	golden.Check(t, c)
	if len(f.forgot) != 0 {
		t.Errorf("forgot %v on the first scrape", f.forgot)
	}
}
