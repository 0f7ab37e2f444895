package fsyncprobe

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// downPage is the page of a collector whose Collect is expected to fail
// with a DownError of the given reason after sending its metrics (the
// agent's Set exposes them and reports the collector down).
type downPage struct {
	t      *testing.T
	c      collectors.Collector
	reason string
}

func (d downPage) Collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	err := d.c.Collect(ctx, ch)
	var de *collectors.DownError
	if !errors.As(err, &de) || de.Reason != d.reason {
		d.t.Errorf("Collect: %v, want down with reason %q", err, d.reason)
	}
	return nil
}

func (d downPage) Close() error { return nil }

// TestGoldenMetrics: the probe's kept state for two paths: the sibling of
// etcd's data directory, probed fine for a while (a fast NVMe disk with a
// few slow syncs), and an explicit path whose filesystem went read-only
// after some rounds, which takes the collector down with its reason.
func TestGoldenMetrics(t *testing.T) {
	us := time.Microsecond
	ok := &pathState{target: target{label: "/var/lib/netsonde-fsync-probe"}}
	for _, d := range []time.Duration{
		90 * us, 110 * us, 118 * us, 140 * us, 160 * us, 175 * us, 190 * us, 210 * us, 240 * us, 260 * us,
		310 * us, 420 * us, 480 * us, 730 * us, 1600 * us, 9200 * us, 12 * time.Millisecond,
	} {
		ok.hist.Observe(d)
	}
	ro := &pathState{target: target{label: "/mnt/backup"}, reason: "read_only"}
	for _, d := range []time.Duration{2100 * us, 3400 * us, 5800 * us, 7100 * us, 19 * time.Millisecond} {
		ro.hist.Observe(d)
	}
	p := &prober{state: map[string]*pathState{ok.label: ok, ro.label: ro}}
	golden.Check(t, downPage{t: t, c: p, reason: "read_only"})
}
