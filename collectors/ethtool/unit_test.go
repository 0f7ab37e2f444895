package ethtool

import (
	"log/slog"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

func TestCounterName(t *testing.T) {
	for stat, want := range map[string]string{
		"rx_missed_errors":         "rx_missed_errors",
		"pps_allowance_exceeded":   "pps_allowance_exceeded",
		"rx_queue_0_xdp_drops":     "rx_queue_N_xdp_drops",
		"rx_queue_15_drops":        "rx_queue_N_drops",
		"tx_queue_3_drops":         "tx_queue_N_drops",
		"rx12_xdp_drop":            "rxN_xdp_drop",
		"tx0_dropped":              "txN_dropped",
		"rx_queue_0_xdp_packets":   "",
		"tx_queue_0_xdp_xmit":      "",
		"rx_bytes":                 "",
		"rx_queue_0_xdp_drops_x":   "",
		"queue_0_rx_bad_req_id":    "",
		"rx_queue_x_drops":         "",
		"bw_in_allowance_exceeded": "bw_in_allowance_exceeded",
	} {
		got, ok := counterName(stat)
		if got != want || ok != (want != "") {
			t.Errorf("counterName(%q) = %q, %v; want %q", stat, got, ok, want)
		}
	}
}

// fakeDriver answers for a few interfaces by name.
type fakeDriver struct {
	stats map[string][]string
	vals  map[string][]uint64
	err   map[string]error
}

func (f *fakeDriver) count(dev string) (int, error) {
	if err := f.err[dev]; err != nil {
		return 0, err
	}
	return len(f.stats[dev]), nil
}
func (f *fakeDriver) names(dev string, n int) ([]string, error) { return f.stats[dev], nil }
func (f *fakeDriver) values(dev string, n int) ([]uint64, error) {
	if err := f.err[dev]; err != nil {
		return nil, err
	}
	return f.vals[dev], nil
}
func (f *fakeDriver) Close() error { return nil }

func fixture() (*fakeDriver, *hostnet.View) {
	drv := &fakeDriver{
		stats: map[string][]string{
			"eth0":       {"rx_packets", "rx_missed_errors", "pps_allowance_exceeded", "bw_in_allowance_exceeded", "rx_queue_0_drops", "rx_queue_1_drops"},
			"veth1a2b3c": {"peer_ifindex", "rx_queue_0_xdp_packets", "rx_queue_0_xdp_drops", "rx_queue_1_xdp_drops", "rx_queue_0_drops"},
			"veth4d5e6f": {"peer_ifindex", "rx_queue_0_xdp_drops"},
		},
		vals: map[string][]uint64{
			"eth0":       {1e9, 1200, 37, 0, 5, 6},
			"veth1a2b3c": {7, 500, 60, 40, 0},
			"veth4d5e6f": {7, 0},
		},
		err: map[string]error{"lo": unix.EOPNOTSUPP, "flannel.1": unix.EOPNOTSUPP, "cni0": unix.ENODEV},
	}
	return drv, golden.Node()
}

// TestGoldenMetrics: eth0's named counters (rx_packets left out, a zero
// allowance absent), queues summed, a veth's XDP drops, a quiet veth with
// no series, and cni0 gone during the read (counted).
func TestGoldenMetrics(t *testing.T) {
	drv, view := fixture()
	c := newCollector(collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view}, drv)
	c.refresh()
	golden.Check(t, c)
}

// A driver whose list changed between the rounds (queues added): the
// round skips it and counts it, and the next reads the new names.
func TestRenamedCounters(t *testing.T) {
	drv, view := fixture()
	c := newCollector(collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view}, drv)
	c.refresh()
	errs := c.errs.Load()
	drv.stats["veth4d5e6f"] = []string{"peer_ifindex", "rx_queue_0_xdp_drops", "rx_queue_1_xdp_drops"}
	drv.vals["veth4d5e6f"] = []uint64{7, 3, 4}
	c.refresh()
	// cni0, gone, fails each round too.
	if got := c.errs.Load() - errs; got != 2 {
		t.Fatalf("%d errors for a changed list and cni0, want 2", got)
	}
	c.refresh()
	for _, s := range *c.last.Load() {
		if s.iface == "veth4d5e6f" {
			if s.counter != "rx_queue_N_xdp_drops" || s.v != 7 {
				t.Fatalf("after the change: %+v, want rx_queue_N_xdp_drops 7", s)
			}
			return
		}
	}
	t.Fatal("the changed driver's counters never read again")
}
