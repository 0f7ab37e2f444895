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
	"os/exec"
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
	"github.com/netsonde/netsonde/internal/testenv"
)

var (
	oddDesc = prometheus.NewDesc("netsonde_odd_values", "Label values that need escaping \\ and\nnewlines \"quoted\".",
		[]string{"value", "other"}, prometheus.Labels{"const": "c"})
	// The mtu family again, from a collector that does not render it.
	mtuAgainDesc = prometheus.NewDesc(collectors.Namespace+"_interface_mtu_bytes",
		"MTU of the network interface, in bytes.", []string{"interface", "kind", "namespace", "pod"}, nil)
	lastDesc = prometheus.NewDesc("zzz_last", "Sorted after everything.", []string{"x"}, nil)
)

// odd renders series whose label values need escaping and sort
// differently as text than as values ("a b" before "a" as text).
type odd struct {
	series *series.Cache[string]
}

func (o odd) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	for i, v := range []string{"a", "a b", `q"uote`, `back\slash`, "new\nline", "", "ünïcode", "a!"} {
		ch <- o.series.Metric(v, float64(i)-1.5, func() []string { return []string{v, "x"} })
	}
	o.series.Sweep()
	return nil
}
func (odd) Close() error { return nil }

type constCollector []prometheus.Metric

func (c constCollector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	for _, m := range c {
		ch <- m
	}
	return nil
}
func (constCollector) Close() error { return nil }

func collector(c collectors.Collector) collectors.Factory {
	return func(context.Context, collectors.Deps) (collectors.Collector, error) { return c, nil }
}

// exposeFixture is a Set and a registry exercising every path of the
// rendered handler; withMTUAgain adds a collector that exports the mtu
// family without rendering it.
func exposeFixture(t testing.TB, withMTUAgain bool) (*prometheus.Registry, *collectors.Set) {
	links := make([]hostnet.Link, 40)
	for i := range links {
		links[i] = hostnet.Link{Index: i + 1, Name: fmt.Sprintf("f%d%c", i/2, "ab"[i%2]), Kind: "veth", MTU: 1500 + i%3*100}
	}
	logger := slog.New(slog.DiscardHandler)
	enabled := []collectors.Enabled{
		{Name: "mtu", Factory: mtu.New},
		{Name: "drops", Factory: collector(&benchDrops{series: series.NewCache[benchDropKey](benchDropsDesc, prometheus.CounterValue), n: 30, still: true, scrape: 7})},
		{Name: "small", Factory: collector(benchSmall{})},
		{Name: "odd", Factory: collector(odd{series.NewCache[string](oddDesc, prometheus.GaugeValue)})},
	}
	if withMTUAgain {
		enabled = append(enabled, collectors.Enabled{Name: "again", Factory: collector(constCollector{
			prometheus.MustNewConstMetric(mtuAgainDesc, prometheus.GaugeValue, 9000, "zz-const", "dummy", "", ""),
		})})
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

var accepts = map[string]string{
	"none":           "",
	"text-0.0.4":     "text/plain;version=0.0.4",
	"text-1.0.0":     "text/plain;version=1.0.0;escaping=allow-utf-8",
	"openmetrics":    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
	"openmetrics001": "application/openmetrics-text;version=0.0.1",
	"curl":           "*/*",
}

// The page the handler writes itself is byte for byte the page promhttp
// wrote before, in every text format it writes itself, compressed or not,
// with a rendered family that another collector exports too (merged under
// one HELP and TYPE), label values that need escaping, and families of the
// registry sorted around the collectors'.
func TestRenderedPageIsPromhttpPage(t *testing.T) {
	for _, again := range []bool{false, true} {
		reg, set := exposeFixture(t, again)
		h := newScrapeHandler(0, reg, set, slog.New(slog.DiscardHandler))
		for name, accept := range accepts {
			for _, encoding := range []string{"", "gzip"} {
				// Twice: the first scrape sorts, the next reuses the order.
				for range 2 {
					want, wantType := registryPage(t, reg, set, accept)
					got, gotType := get(t, h, accept, encoding)
					if gotType != wantType {
						t.Errorf("%s: Content-Type %q, want %q", name, gotType, wantType)
					}
					want, got = durations.ReplaceAllString(want, ""), durations.ReplaceAllString(got, "")
					if got != want {
						t.Fatalf("%s, %s, mtu again %v: page differs from promhttp's\n%s", name, encoding, again, diff(want, got))
					}
				}
			}
		}
	}
}

func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\nwant %q\ngot  %q", i+1, a, b)
		}
	}
	return ""
}

// promtool accepts the page.
func TestRenderedPagePromtool(t *testing.T) {
	testenv.RequireCommand(t, "promtool")
	reg, set := exposeFixture(t, true)
	h := newScrapeHandler(0, reg, set, slog.New(slog.DiscardHandler))
	page, _ := get(t, h, "", "")
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(page)
	out, err := cmd.CombinedOutput()
	// Exit status 3 is lint advice (no unit suffix and the like), not
	// a format error.
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 3) {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
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
