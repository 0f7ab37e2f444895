package series

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/netsonde/netsonde/internal/golden"
	"github.com/netsonde/netsonde/internal/testenv"
)

var (
	mtuDesc = prometheus.NewDesc("netsonde_interface_mtu_bytes",
		"MTU of the network interface, in bytes.", []string{"interface", "kind", "namespace", "pod"}, nil)
	dropsDesc = prometheus.NewDesc("netsonde_packet_drops_total",
		"Packets dropped by the kernel, by the kernel's drop reason (enum skb_drop_reason).",
		[]string{"reason", "protocol", "interface", "namespace", "pod"}, nil)
	oddDesc = prometheus.NewDesc("netsonde_odd_values", "Label values that need escaping \\ and\nnewlines \"quoted\".",
		[]string{"value", "other"}, prometheus.Labels{"const": "c"})
	rttDesc    = prometheus.NewDesc("netsonde_node_rtt_seconds", "Round-trip time to peer nodes.", []string{"peer"}, nil)
	eventsDesc = prometheus.NewDesc("netsonde_conntrack_events_total", "Conntrack events, by type.", []string{"type"}, nil)
	lastDesc   = prometheus.NewDesc("zzz_last", "Sorted after everything.", []string{"x"}, nil)
)

// fixture is a registry and the collectors' metrics of one scrape,
// exercising every path of the Encoder: rendered families (an mtu and a
// drops stand-in, label values that need escaping and sort differently
// as text than as values: "a b" before "a" as text), families built per
// scrape (a histogram, counters), and the registry's families sorted
// around them. mtuAgain adds a series of the mtu family that is not
// rendered, as another collector would export it: the family is then
// merged under one HELP and TYPE.
type fixture struct {
	reg      *prometheus.Registry
	mtu      *Cache[int]
	drops    *Cache[int]
	odd      *Cache[string]
	mtuAgain bool
}

func newFixture(mtuAgain bool) *fixture {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aaa_first", Help: "Sorted before everything."}, func() float64 { return 1e21 }))
	reg.MustRegister(collectorFunc(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(lastDesc, prometheus.CounterValue, 3, "y")
	}))
	return &fixture{
		reg:      reg,
		mtu:      NewCache[int](mtuDesc, prometheus.GaugeValue),
		drops:    NewCache[int](dropsDesc, prometheus.CounterValue),
		odd:      NewCache[string](oddDesc, prometheus.GaugeValue),
		mtuAgain: mtuAgain,
	}
}

// collect is one scrape's metrics of the collectors.
func (f *fixture) collect() []prometheus.Metric {
	var ms []prometheus.Metric
	for i := range 40 {
		name := fmt.Sprintf("f%d%c", i/2, "ab"[i%2])
		ms = append(ms, f.mtu.Metric(i, float64(1500+i%3*100), func() []string { return []string{name, "veth", "", ""} }))
	}
	for i := range 30 {
		ms = append(ms, f.drops.Metric(i, float64(7*(i+1)), func() []string {
			return []string{[]string{"NO_SOCKET", "NOT_SPECIFIED", "OTHERHOST"}[i%3], "ipv4", fmt.Sprintf("f%da", i), "", ""}
		}))
	}
	for i, v := range []string{"a", "a b", `q"uote`, `back\slash`, "new\nline", "", "ünïcode", "a!"} {
		ms = append(ms, f.odd.Metric(v, float64(i)-1.5, func() []string { return []string{v, "x"} }))
	}
	buckets := map[float64]uint64{}
	for i := range 30 {
		buckets[float64(i)/1000] = uint64(i * 3)
	}
	for _, peer := range []string{"node-a", "node-b", "node-c"} {
		ms = append(ms, prometheus.MustNewConstHistogram(rttDesc, 90, 0.042, buckets, peer))
	}
	for _, t := range []string{"new", "destroy", "drop", "insert_failed"} {
		ms = append(ms, prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, 12345, t))
	}
	if f.mtuAgain {
		ms = append(ms, prometheus.MustNewConstMetric(mtuDesc, prometheus.GaugeValue, 9000, "zz-const", "dummy", "", ""))
	}
	f.mtu.Sweep()
	f.drops.Sweep()
	f.odd.Sweep()
	return ms
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// promhttpPage is the page and Content-Type promhttp serves of the
// registry and the metrics, for req.
func promhttpPage(t *testing.T, reg prometheus.Gatherer, ms []prometheus.Metric, req *http.Request) (string, string) {
	t.Helper()
	own := prometheus.NewRegistry()
	own.MustRegister(replay(ms))
	h := promhttp.HandlerFor(prometheus.Gatherers{reg, own}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: true})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("promhttp: HTTP %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String(), rec.Header().Get("Content-Type")
}

// encoderPage is the page an Encoder writes of the registry and the
// metrics, in format.
func encoderPage(t *testing.T, e *Encoder, reg prometheus.Gatherer, ms []prometheus.Metric, format expfmt.Format) string {
	t.Helper()
	ch := make(chan prometheus.Metric, len(ms))
	for _, m := range ms {
		ch <- m
	}
	close(ch)
	page := e.Gather(reg, ch)
	defer page.Release()
	if len(page.Errs) > 0 {
		t.Fatalf("gathering: %v", page.Errs)
	}
	var buf bytes.Buffer
	if errs := page.Write(&buf, format, nil); errs != nil {
		t.Fatalf("writing: %v", errs)
	}
	return buf.String()
}

var accepts = map[string]string{
	"none":           "",
	"text-0.0.4":     "text/plain;version=0.0.4",
	"text-1.0.0":     "text/plain;version=1.0.0;escaping=allow-utf-8",
	"openmetrics":    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
	"openmetrics001": "application/openmetrics-text;version=0.0.1",
	"curl":           "*/*",
}

// The page an Encoder writes is byte for byte the page promhttp writes of
// the same registry and metrics, in every format it writes, its
// Content-Type the format negotiated as promhttp does: with a rendered
// family that is also exported unrendered (merged under one HELP and
// TYPE), label values that need escaping, and families of the registry
// sorted around the collectors'.
func TestPageIsPromhttpPage(t *testing.T) {
	for _, again := range []bool{false, true} {
		f := newFixture(again)
		var e Encoder
		for name, accept := range accepts {
			req := httptest.NewRequest("GET", "/metrics", nil)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			format := expfmt.NegotiateAccept(req.Header, expfmt.DefaultOpenMetricsAcceptedFormats()...)
			if !CanWrite(format) {
				t.Fatalf("%s: the Encoder does not write %s", name, format)
			}
			// Twice: the first scrape sorts, the next reuses the order.
			for range 2 {
				ms := f.collect()
				want, wantType := promhttpPage(t, f.reg, ms, req)
				if string(format) != wantType {
					t.Errorf("%s: format %q, promhttp's Content-Type %q", name, format, wantType)
				}
				if got := encoderPage(t, &e, f.reg, ms, format); got != want {
					t.Fatalf("%s, mtu again %v: page differs from promhttp's\n%s", name, again, golden.Diff(want, got))
				}
			}
		}
	}
}

// promtool accepts the page.
func TestPagePromtool(t *testing.T) {
	testenv.RequireCommand(t, "promtool")
	f := newFixture(true)
	var e Encoder
	page := encoderPage(t, &e, f.reg, f.collect(), expfmt.NewFormat(expfmt.TypeTextPlain))
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(page)
	out, err := cmd.CombinedOutput()
	// Exit status 3 is lint advice (no unit suffix and the like), not
	// a format error.
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 3) {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
