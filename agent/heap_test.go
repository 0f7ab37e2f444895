package agent

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/series"
	"github.com/netsonde/netsonde/internal/testenv"
)

var heapProfile = flag.String("heap.profile", "", "TestHeapPerSeries: write the heap profile (in use, after a GC) at 10,000 series to this file")

// dropLabels is a drops series' label set as the drops collector keys it.
type dropLabels struct{ reason, protocol, iface, namespace, pod string }

// heapDrops stands in for the drops collector at its largest: n series of
// five labels, their values as long as a pod's, made before the
// measurement begins (the real collector's come from the host view and
// the pod index, which hold them anyway).
type heapDrops struct {
	series *series.Cache[dropLabels]
	keys   []dropLabels
	scrape uint64
}

func newHeapDrops(n int) *heapDrops {
	d := &heapDrops{series: series.NewCache[dropLabels](benchDropsDesc, prometheus.CounterValue)}
	for i := range n {
		d.keys = append(d.keys, dropLabels{
			reason:    []string{"NO_SOCKET", "NOT_SPECIFIED", "OTHERHOST", "NETFILTER_DROP"}[i%4],
			protocol:  "ipv4",
			iface:     fmt.Sprintf("veth%08x", i),
			namespace: fmt.Sprintf("team-%d", i%50),
			pod:       fmt.Sprintf("web-7d9f8b6c5-%05d", i),
		})
	}
	return d
}

func (d *heapDrops) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	d.scrape++
	for i, k := range d.keys {
		ch <- d.series.Metric(k, float64(d.scrape*uint64(i+1)), func() []string {
			return []string{k.reason, k.protocol, k.iface, k.namespace, k.pod}
		})
	}
	d.series.Sweep()
	return nil
}
func (d *heapDrops) Close() error { return nil }

type heapFigures struct {
	live      float64 // live heap held between scrapes, per series
	allocated float64 // allocated per scrape, per series
	page      int     // bytes of one page
}

// measureHeap serves three scrapes of n drop series through the whole
// handler (Set, rendered path, page buffer; text as curl asks) and
// measures what stays live afterwards and what a scrape allocates, less
// the same for no series at all, per series.
func measureHeap(t *testing.T, n int, profile string) heapFigures {
	t.Helper()
	one := func(n int, profile string) (live, allocated uint64, page int) {
		drops := newHeapDrops(n)
		logger := slog.New(slog.DiscardHandler)
		before := testenv.LiveHeap()
		set := collectors.NewSet(logger, []collectors.Enabled{
			{Name: "drops", Factory: func(context.Context, collectors.Deps) (collectors.Collector, error) { return drops, nil }},
		})
		set.Start(context.Background(), collectors.Deps{Logger: logger})
		h := newScrapeHandler(0, prometheus.NewRegistry(), set, logger)
		var ms runtime.MemStats
		for i := range 3 {
			if i == 2 {
				runtime.ReadMemStats(&ms)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("scrape %d: %d %s", i+1, rec.Code, rec.Body)
			}
			page = rec.Body.Len()
		}
		alloc0 := ms.TotalAlloc
		runtime.ReadMemStats(&ms)
		allocated = ms.TotalAlloc - alloc0
		live = testenv.LiveHeap() - before
		if profile != "" {
			f, err := os.Create(profile)
			if err != nil {
				t.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		runtime.KeepAlive(h)
		runtime.KeepAlive(drops)
		return live, allocated, page
	}
	live0, alloc0, _ := one(0, "")
	live, alloc, page := one(n, profile)
	return heapFigures{
		live:      (float64(live) - float64(live0)) / float64(n),
		allocated: (float64(alloc) - float64(alloc0)) / float64(n),
		page:      page,
	}
}

// maxHeapPerSeries bounds TestHeapPerSeries: four 143-byte lines.
const maxHeapPerSeries = 600

// TestHeapPerSeries: what the scrape path holds per series between two
// scrapes (the series caches, the last collection, the page's order and
// text), at 1,000 and 10,000 series of the drops collector's shape:
// `go test -run TestHeapPerSeries -v ./agent/` prints the figures, and
// `-heap.profile=FILE` writes the profile at 10,000 for
// `go tool pprof -sample_index=inuse_space`.
func TestHeapPerSeries(t *testing.T) {
	if *heapProfile != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1 // every allocation, not one per 512 KB
	}
	for _, n := range []int{1000, 10000} {
		profile := ""
		if n == 10000 {
			profile = *heapProfile
		}
		f := measureHeap(t, n, profile)
		t.Logf("%d series: live heap %.0f B/series, allocated %.0f B/series per scrape, page %d B (%.0f B/series)",
			n, f.live, f.allocated, f.page, float64(f.page)/float64(n))
		// 1,185 B a series at 10,000 when a series kept its label pairs
		// beside its text and the order a second copy of the text; 429
		// since.
		if f.live > maxHeapPerSeries {
			t.Errorf("%d series: %.0f B of live heap per series, want at most %d", n, f.live, maxHeapPerSeries)
		}
	}
}
