package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/mtu"
	"github.com/netsonde/netsonde/collectors/series"
)

// benchPods names the host ends of the first 110 interfaces.
type benchPods struct{}

func (benchPods) ByNetns(uint64) (cluster.Pod, bool)  { return cluster.Pod{}, false }
func (benchPods) ByIP(netip.Addr) (cluster.Pod, bool) { return cluster.Pod{}, false }
func (benchPods) ByHostInterface(i int) (cluster.Pod, bool) {
	if i <= 110 {
		return cluster.Pod{Namespace: "shop", Name: fmt.Sprintf("web-%d", i)}, true
	}
	return cluster.Pod{}, false
}
func (benchPods) PeerNodes(int) []cluster.Node { return nil }

var (
	benchDropsDesc = prometheus.NewDesc(collectors.Namespace+"_packet_drops_total",
		"Packets dropped by the kernel, by the kernel's drop reason (enum skb_drop_reason).",
		[]string{"reason", "protocol", "interface", "namespace", "pod"}, nil)
	benchRTTDesc = prometheus.NewDesc(collectors.Namespace+"_node_rtt_seconds",
		"Round-trip time to peer nodes.", []string{"peer"}, nil)
	benchEventsDesc = prometheus.NewDesc(collectors.Namespace+"_conntrack_events_total",
		"Conntrack events, by type.", []string{"type"}, nil)
)

type benchDropKey struct{ reason, iface string }

// benchDrops stands in for the drops collector: one counter series per
// interface and reason (500 here, as on the footprint namespace), through
// a series.Cache, values moving between scrapes.
type benchDrops struct {
	series *series.Cache[benchDropKey]
	n      int
	still  bool // the same values every scrape
	scrape uint64
}

func (d *benchDrops) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	if !d.still {
		d.scrape++
	}
	for i := range d.n {
		k := benchDropKey{reason: []string{"NO_SOCKET", "NOT_SPECIFIED", "OTHERHOST"}[i%3], iface: fmt.Sprintf("f%da", i)}
		ch <- d.series.Metric(k, float64(d.scrape*uint64(i+1)), func() []string {
			return []string{k.reason, "ipv4", k.iface, "", ""}
		})
	}
	d.series.Sweep()
	return nil
}
func (d *benchDrops) Close() error { return nil }

// benchSmall stands in for the many small collectors: a histogram and a
// few counters, built per scrape.
type benchSmall struct{}

func (benchSmall) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	buckets := map[float64]uint64{}
	for i := range 30 {
		buckets[float64(i)/1000] = uint64(i * 3)
	}
	for _, peer := range []string{"node-a", "node-b", "node-c"} {
		ch <- prometheus.MustNewConstHistogram(benchRTTDesc, 90, 0.042, buckets, peer)
	}
	for _, t := range []string{"new", "destroy", "drop", "insert_failed", "early_drop", "error", "search_restart", "expect_new", "expect_create", "expect_delete"} {
		ch <- prometheus.MustNewConstMetric(benchEventsDesc, prometheus.CounterValue, 12345, t)
	}
	return nil
}
func (benchSmall) Close() error { return nil }

// benchHandler is the scrape handler over what the agent serves at 1,000
// interfaces: the real mtu collector on 1,000 static links, a drops
// stand-in with 500 series, a small collector, and the agent's registry
// (build info, Go runtime, process).
func benchHandler(b testing.TB) http.Handler {
	links := make([]hostnet.Link, 1000)
	for i := range links {
		links[i] = hostnet.Link{Index: i + 1, Name: fmt.Sprintf("f%d%c", i/2, "ab"[i%2]), Kind: "veth", MTU: 1500}
	}
	logger := slog.New(slog.DiscardHandler)
	set := collectors.NewSet(logger, []collectors.Enabled{
		{Name: "mtu", Factory: mtu.New},
		{Name: "drops", Factory: func(context.Context, collectors.Deps) (collectors.Collector, error) {
			return &benchDrops{series: series.NewCache[benchDropKey](benchDropsDesc, prometheus.CounterValue), n: 500}, nil
		}},
		{Name: "small", Factory: func(context.Context, collectors.Deps) (collectors.Collector, error) { return benchSmall{}, nil }},
	})
	set.Start(context.Background(), collectors.Deps{Logger: logger, Net: hostnet.Fixed(1, links, nil), Pods: benchPods{}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector(collectors.Namespace),
		promcollectors.NewGoCollector(),
		promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}),
	)
	return newScrapeHandler(0, reg, set, logger)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discard is a ResponseWriter that keeps nothing but the byte count.
type discard struct {
	h http.Header
	n int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkScrape is one whole scrape through the handler at 1,000
// interfaces (about 1,700 series), in the formats Prometheus and curl ask
// for: `go test -run - -bench Scrape -benchmem ./agent/`.
func BenchmarkScrape(b *testing.B) {
	h := benchHandler(b)
	for _, c := range []struct{ name, accept, encoding string }{
		{"text", "", ""},
		{"text-gzip", "text/plain;version=0.0.4", "gzip"},
		{"openmetrics-gzip", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "gzip"},
		{"protobuf", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", ""},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			if c.accept != "" {
				req.Header.Set("Accept", c.accept)
			}
			if c.encoding != "" {
				req.Header.Set("Accept-Encoding", c.encoding)
			}
			var bytes int
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				w := &discard{h: http.Header{}}
				h.ServeHTTP(w, req)
				bytes = w.n
			}
			// CPU time of the whole process per scrape: on a shared
			// machine ns/op (wall) swings with the load, this less.
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(bytes), "bytes/scrape")
		})
	}
}

var mtuCollections = regexp.MustCompile(`netsonde_collector_collections_total\{collector="mtu"\} (\d+)`)

// BenchmarkConcurrentScrapes is rounds of scrapes arriving at once, one or
// four, through the handler at 1,000 interfaces (text, gzip, as Prometheus
// asks): the scrapes of a round share one collection per collector, so a
// round of four costs one collection and four encodings, not four of
// each. It reports CPU per round and per page, and the mtu collector's
// collections per round: `go test -run - -bench ConcurrentScrapes ./agent/`.
func BenchmarkConcurrentScrapes(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("scrapers-%d", n), func(b *testing.B) {
			h := benchHandler(b)
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Accept", "text/plain;version=0.0.4")
			req.Header.Set("Accept-Encoding", "gzip")
			rounds := 0
			cpu := cpuTime()
			for b.Loop() {
				var wg sync.WaitGroup
				for range n {
					wg.Go(func() { h.ServeHTTP(&discard{h: http.Header{}}, req) })
				}
				wg.Wait()
				rounds++
			}
			cpu = cpuTime() - cpu
			b.ReportMetric(float64(cpu)/float64(rounds), "cpu-ns/round")
			b.ReportMetric(float64(cpu)/float64(rounds*n), "cpu-ns/page")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			m := mtuCollections.FindStringSubmatch(rec.Body.String())
			if m == nil {
				b.Fatalf("no collections of mtu on the page:\n%s", rec.Body)
			}
			made, _ := strconv.Atoi(m[1])
			b.ReportMetric(float64(made-1)/float64(rounds), "collections/round")
		})
	}
}
