package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/mtu"
	"github.com/netsonde/netsonde/collectors/series"
	"github.com/netsonde/netsonde/internal/golden"
	"github.com/netsonde/netsonde/internal/testenv"
)

var lastDesc = prometheus.NewDesc("zzz_last", "Sorted after everything.", []string{"x"}, nil)

func collector(c collectors.Collector) collectors.Factory {
	return func(context.Context, collectors.Deps) (collectors.Collector, error) { return c, nil }
}

// exposeFixture is a Set and a registry whose page has rendered families
// (the real mtu collector, a drops stand-in), families built per scrape
// and the registry's families sorted around them.
func exposeFixture(t testing.TB) (*prometheus.Registry, *collectors.Set) {
	links := make([]hostnet.Link, 40)
	for i := range links {
		links[i] = hostnet.Link{Index: i + 1, Name: fmt.Sprintf("f%d%c", i/2, "ab"[i%2]), Kind: "veth", MTU: 1500 + i%3*100}
	}
	logger := slog.New(slog.DiscardHandler)
	enabled := []collectors.Enabled{
		{Name: "mtu", Factory: mtu.New},
		{Name: "drops", Factory: collector(&benchDrops{series: series.NewCache[benchDropKey](benchDropsDesc, prometheus.CounterValue), n: 30, still: true, scrape: 7})},
		{Name: "small", Factory: collector(benchSmall{})},
	}
	set := collectors.NewSet(logger, enabled)
	set.Start(context.Background(), collectors.Deps{Logger: logger, Net: hostnet.Fixed(1, links, nil), Pods: benchPods{}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aaa_first", Help: "Sorted before everything."}, func() float64 { return 1e21 }))
	reg.MustRegister(collectorFunc(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(lastDesc, prometheus.CounterValue, 3, "y")
	}))
	return reg, set
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// registryPage is the page as the handler served it before it wrote
// rendered series itself: everything through promhttp.
func registryPage(t *testing.T, reg *prometheus.Registry, set *collectors.Set, accept string) (string, string) {
	own := prometheus.NewRegistry()
	own.MustRegister(set.WithContext(context.Background(), time.Now()))
	h := promhttp.HandlerFor(prometheus.Gatherers{reg, own}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: true})
	return get(t, h, accept, "")
}

func get(t *testing.T, h http.Handler, accept, encoding string) (string, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	body := rec.Body.Bytes()
	if cl := rec.Header().Get("Content-Length"); cl != "" && cl != fmt.Sprint(len(body)) {
		t.Errorf("Content-Length %s for %d bytes", cl, len(body))
	}
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return string(body), rec.Header().Get("Content-Type")
}

// durations are the lines whose values differ from one scrape to the next:
// durations, and the count of collections (one more per scrape).
var durations = regexp.MustCompile(`(?m)^netsonde_collector_(duration_seconds|collections_total)\{.*\n`)

// accepts are the Accept headers of Prometheus (OpenMetrics first), of
// curl, and of none.
var accepts = []string{
	"",
	"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
	"*/*",
}

// The handler serves the text encoder's page as promhttp served it
// before: the same page and Content-Type, compressed or not, to
// Prometheus, curl and a client that asks for nothing, of the real Set
// and registry. Every format the encoder writes, and its own cases
// (escapes, a family exported both rendered and not, the order reused),
// are series.TestPageIsPromhttpPage's.
func TestRenderedPageIsPromhttpPage(t *testing.T) {
	reg, set := exposeFixture(t)
	h := newScrapeHandler(0, reg, set, slog.New(slog.DiscardHandler))
	for _, accept := range accepts {
		for _, encoding := range []string{"", "gzip"} {
			want, wantType := registryPage(t, reg, set, accept)
			got, gotType := get(t, h, accept, encoding)
			if gotType != wantType {
				t.Errorf("Accept %q: Content-Type %q, want %q", accept, gotType, wantType)
			}
			want, got = durations.ReplaceAllString(want, ""), durations.ReplaceAllString(got, "")
			if got != want {
				t.Fatalf("Accept %q, Accept-Encoding %q: page differs from promhttp's\n%s", accept, encoding, golden.Diff(want, got))
			}
		}
	}
}

// A series two caches both send is written once, the copy reported as
// the registry reports it; the name[] parameter keeps only those families.
func TestRenderedDuplicatesAndFilter(t *testing.T) {
	a := series.NewCache[string](benchDropsDesc, prometheus.CounterValue)
	b := series.NewCache[string](benchDropsDesc, prometheus.CounterValue)
	logger := slog.New(slog.DiscardHandler)
	set := collectors.NewSet(logger, []collectors.Enabled{
		{Name: "a", Factory: collector(constCollectorFunc(func() []prometheus.Metric {
			defer a.Sweep()
			return []prometheus.Metric{a.Metric("x", 1, func() []string { return []string{"r", "ipv4", "eth0", "", ""} })}
		}))},
		{Name: "b", Factory: collector(constCollectorFunc(func() []prometheus.Metric {
			defer b.Sweep()
			return []prometheus.Metric{b.Metric("x", 1, func() []string { return []string{"r", "ipv4", "eth0", "", ""} })}
		}))},
	})
	set.Start(context.Background(), collectors.Deps{Logger: logger})
	h := newScrapeHandler(0, prometheus.NewRegistry(), set, logger)
	var logged testenv.SyncBuffer
	h.opts.ErrorLog = log.New(&logged, "", 0)
	for range 2 {
		page, _ := get(t, h, "", "")
		if n := strings.Count(page, `netsonde_packet_drops_total{interface="eth0"`); n != 1 {
			t.Errorf("the series twice over is on the page %d times:\n%s", n, page)
		}
	}
	if !strings.Contains(logged.String(), "was collected before with the same name and label values") {
		t.Errorf("no error logged for the copy: %q", logged.String())
	}

	req := httptest.NewRequest("GET", "/metrics?name[]=netsonde_collector_up&name[]=netsonde_packet_drops_total", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var families []string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if name, ok := strings.CutPrefix(l, "# TYPE "); ok {
			families = append(families, strings.Fields(name)[0])
		}
	}
	if strings.Join(families, " ") != "netsonde_collector_up netsonde_packet_drops_total" {
		t.Errorf("name[] filter: families %v", families)
	}
}

type constCollectorFunc func() []prometheus.Metric

func (f constCollectorFunc) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	for _, m := range f() {
		ch <- m
	}
	return nil
}
func (constCollectorFunc) Close() error { return nil }

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                     false,
		"gzip":                 true,
		"gzip, deflate, br":    true,
		"identity, gzip":       false,
		"gzip;q=0":             false,
		"identity;q=0.5, gzip": true,
		"*":                    false,
		"GZIP;q=0.8":           true,
		"deflate":              false,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if header != "" {
			r.Header.Set("Accept-Encoding", header)
		}
		if got := acceptsGzip(r); got != want {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", header, got, want)
		}
	}
}
