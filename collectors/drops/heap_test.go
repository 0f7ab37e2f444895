package drops

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/agent/hostnet"
	bpfdrops "github.com/netsonde/netsonde/bpf/drops"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/dropreason"
	"github.com/netsonde/netsonde/internal/testenv"
)

// TestHeapPerKey: what the collector holds between scrapes per key of the
// kernel's map (its maps of the keys' labels and the series' sums, and its
// SeriesCache), 10,000 keys on 1,000 interfaces, each its own series:
// `go test -run TestHeapPerKey -v ./collectors/drops/`.
func TestHeapPerKey(t *testing.T) {
	const ifaces, reasons = 1000, 10
	links := make([]hostnet.Link, ifaces)
	for i := range links {
		links[i] = hostnet.Link{Index: i + 1, Name: fmt.Sprintf("veth%08x", i), Kind: "veth", MTU: 1500}
	}
	view := hostnet.Fixed(1, links, nil)
	names := dropreason.Names{}
	counts := bpfdrops.Counts{ByKey: map[bpfdrops.Key]uint64{}}
	for r := range uint32(reasons) {
		names[r+1] = fmt.Sprintf("REASON_%d", r+1)
		for i := range ifaces {
			counts.ByKey[bpfdrops.Key{Reason: r + 1, Netns: 1, Ifindex: uint32(i + 1), Protocol: 0x0800}] = uint64(i)
		}
	}
	p := &fixedProbe{counts: counts}
	deps := collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view, Clock: collectors.SystemClock{}}
	before := testenv.LiveHeap()
	c := newCollector(deps, p, names, time.Minute)
	for range 3 {
		ch := make(chan prometheus.Metric, 64)
		go func() {
			if err := c.Collect(context.Background(), ch); err != nil {
				t.Error(err)
			}
			close(ch)
		}()
		n := 0
		for range ch {
			n++
		}
		if want := ifaces*reasons + 5; n != want {
			t.Fatalf("%d metrics, want %d", n, want)
		}
	}
	live := testenv.LiveHeap() - before
	runtime.KeepAlive(c)
	keep = c
	perKey := float64(live) / float64(len(counts.ByKey))
	t.Logf("%d keys, %d series: the collector holds %.0f B per key", len(counts.ByKey), c.series.Len(), perKey)
	// 1,566 B before: the series cache kept label pairs beside each
	// text (529 of them), last was two maps swapped (170) and every
	// series' labels were kept in a set of live series too (158); 693
	// since.
	if perKey > 800 {
		t.Errorf("the collector holds %.0f B per key between scrapes, want at most 800", perKey)
	}
}

// keep holds the collector measured last, so that -memprofile (written
// after the tests) still shows what it holds:
// `-memprofilerate=1 -memprofile FILE`, then `go tool pprof -sample_index=inuse_space`.
var keep any
