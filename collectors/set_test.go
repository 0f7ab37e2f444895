package collectors_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/testenv"
)

var fakeDesc = prometheus.NewDesc("netsonde_fake_value", "A fake collector's value.", []string{"which"}, nil)

// fake is a collector whose behaviour each test sets.
type fake struct {
	name       string
	collectErr error
	panics     bool
	closed     atomic.Int32
}

func (f *fake) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	if f.panics {
		panic("boom")
	}
	ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, 1, f.name)
	return f.collectErr
}

func (f *fake) Close() error { f.closed.Add(1); return nil }

func factory(c collectors.Collector, err error) collectors.Factory {
	return func(context.Context, collectors.Deps) (collectors.Collector, error) { return c, err }
}

func startSet(t *testing.T, enabled ...collectors.Enabled) *collectors.Set {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	s := collectors.NewSet(logger, enabled)
	s.Start(context.Background(), collectors.Deps{Logger: logger, Pods: cluster.None{}})
	return s
}

// A collector that cannot start, one that fails to collect and one that
// panics are each reported down with their own reason; the healthy one
// keeps serving its metrics and is reported up.
func TestFailuresAreIsolatedAndReported(t *testing.T) {
	good := &fake{name: "good"}
	failing := &fake{name: "failing", collectErr: collectors.Down("netlink_error", errors.New("EBUSY"))}
	plain := &fake{name: "plain", collectErr: errors.New("no reason given")}
	panicking := &fake{name: "panicking", panics: true}
	s := startSet(t,
		collectors.Enabled{Name: "good", Factory: factory(good, nil)},
		collectors.Enabled{Name: "nostart", Factory: factory(nil, collectors.Down("no_btf", errors.New("no /sys/kernel/btf/vmlinux")))},
		collectors.Enabled{Name: "failing", Factory: factory(failing, nil)},
		collectors.Enabled{Name: "plain", Factory: factory(plain, nil)},
		collectors.Enabled{Name: "panicking", Factory: factory(panicking, nil)},
		collectors.Enabled{Name: "panicstart", Factory: func(context.Context, collectors.Deps) (collectors.Collector, error) { panic("start boom") }},
	)
	want := `
# HELP netsonde_collector_up Whether the collector is working (1) or down (0); reason says why it is down.
# TYPE netsonde_collector_up gauge
netsonde_collector_up{collector="failing",reason="netlink_error"} 0
netsonde_collector_up{collector="good",reason=""} 1
netsonde_collector_up{collector="nostart",reason="no_btf"} 0
netsonde_collector_up{collector="panicking",reason="panic"} 0
netsonde_collector_up{collector="panicstart",reason="panic"} 0
netsonde_collector_up{collector="plain",reason="collect_failed"} 0
# HELP netsonde_fake_value A fake collector's value.
# TYPE netsonde_fake_value gauge
netsonde_fake_value{which="failing"} 1
netsonde_fake_value{which="good"} 1
netsonde_fake_value{which="plain"} 1
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "netsonde_collector_up", "netsonde_fake_value"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "netsonde_collector_duration_seconds"); err != nil || n != 4 {
		t.Fatalf("duration series = %d (%v), want 4: one per started collector", n, err)
	}

	states := map[string]collectors.State{}
	for _, st := range s.States() {
		states[st.Name] = st
	}
	if st := states["nostart"]; st.Up || st.Reason != "no_btf" || !strings.Contains(st.Error, "vmlinux") {
		t.Errorf("nostart state = %+v", st)
	}
	if st := states["good"]; !st.Up || st.Reason != "" {
		t.Errorf("good state = %+v", st)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*fake{good, failing, plain, panicking} {
		if f.closed.Load() != 1 {
			t.Errorf("%s closed %d times, want 1", f.name, f.closed.Load())
		}
	}
}

// A collector that fails one scrape and works the next is reported up again.
func TestRecovery(t *testing.T) {
	f := &fake{name: "flaky", collectErr: errors.New("transient")}
	s := startSet(t, collectors.Enabled{Name: "flaky", Factory: factory(f, nil)})
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	const head = `
# HELP netsonde_collector_up Whether the collector is working (1) or down (0); reason says why it is down.
# TYPE netsonde_collector_up gauge
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(head+`netsonde_collector_up{collector="flaky",reason="collect_failed"} 0
`), "netsonde_collector_up"); err != nil {
		t.Fatal(err)
	}
	f.collectErr = nil
	if err := testutil.GatherAndCompare(reg, strings.NewReader(head+`netsonde_collector_up{collector="flaky",reason=""} 1
`), "netsonde_collector_up"); err != nil {
		t.Fatal(err)
	}
}

func TestDownReason(t *testing.T) {
	base := errors.New("permission denied")
	err := collectors.Down("not_permitted", base)
	if got := collectors.ReasonOf(err, "x"); got != "not_permitted" {
		t.Errorf("ReasonOf = %q", got)
	}
	if !errors.Is(err, base) {
		t.Error("Down does not unwrap to its cause")
	}
	if got := collectors.ReasonOf(errors.New("plain"), "fallback"); got != "fallback" {
		t.Errorf("ReasonOf plain = %q", got)
	}
	if collectors.Down("r", nil) != nil {
		t.Error("Down(nil) should be nil")
	}
}

// slow is a collector that sends one metric, then blocks until released,
// ignoring its context, as a collector stuck in a syscall would.
type slow struct {
	release chan struct{}
	calls   atomic.Int32
}

func (s *slow) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	s.calls.Add(1)
	ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, 1, "slow")
	<-s.release
	ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, 2, "slow-late")
	return nil
}

func (s *slow) Close() error { return nil }

// A collector that overruns the scrape's deadline is reported down with
// reason="timeout" and counted, the scrape returns by the deadline with the
// other collectors' metrics, and the stuck collector is not called again
// (a goroutine per scrape) until it returns; then it is up again.
func TestCollectorTimeout(t *testing.T) {
	stuck := &slow{release: make(chan struct{})}
	s := startSet(t,
		collectors.Enabled{Name: "good", Factory: factory(&fake{name: "good"}, nil)},
		collectors.Enabled{Name: "stuck", Factory: factory(stuck, nil)},
	)
	scrape := func() (string, time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		reg := prometheus.NewRegistry()
		reg.MustRegister(s.WithContext(ctx, time.Now()))
		begin := time.Now()
		fams, err := reg.Gather()
		took := time.Since(begin)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				if f.GetName() == "netsonde_collector_duration_seconds" {
					continue
				}
				b.WriteString(f.GetName())
				for _, l := range m.GetLabel() {
					b.WriteString(" " + l.GetName() + "=" + l.GetValue())
				}
				fmt.Fprintf(&b, " %g\n", m.GetGauge().GetValue()+m.GetCounter().GetValue())
			}
		}
		return b.String(), took
	}

	for i, wantTimeouts := range []int{1, 2} {
		page, took := scrape()
		if took > time.Second {
			t.Errorf("scrape %d took %v; the deadline was 200ms", i, took)
		}
		for _, want := range []string{
			"netsonde_collector_up collector=good reason= 1\n",
			"netsonde_collector_up collector=stuck reason=timeout 0\n",
			fmt.Sprintf("netsonde_collector_timeout_total collector=stuck %d\n", wantTimeouts),
			"netsonde_fake_value which=good 1\n",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("scrape %d: no %q in\n%s", i, want, page)
			}
		}
		if strings.Contains(page, "slow-late") {
			t.Errorf("scrape %d carries a metric sent after the deadline:\n%s", i, page)
		}
	}
	if n := stuck.calls.Load(); n != 1 {
		t.Errorf("the stuck collector was called %d times; want 1 (not again while stuck)", n)
	}

	close(stuck.release)
	// A scrape that begins before the released Collect has quite returned
	// still finds it busy and counts one more timeout; the counter must
	// then carry exactly the timeouts the scrapes reported.
	timeouts := 2
	deadline := time.Now().Add(5 * time.Second)
	for {
		page, _ := scrape()
		if strings.Contains(page, "netsonde_collector_up collector=stuck reason=timeout 0\n") {
			timeouts++
		}
		if strings.Contains(page, "netsonde_collector_up collector=stuck reason= 1\n") {
			if want := fmt.Sprintf("netsonde_collector_timeout_total collector=stuck %d\n", timeouts); !strings.Contains(page, want) {
				t.Errorf("timeouts not kept after recovery: want %q in\n%s", want, page)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("released collector not up again:\n%s", page)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gate is a collector that blocks in Collect until released, counting its
// calls, with a value that tells one collection from the next.
type gate struct {
	release chan struct{}
	calls   atomic.Int32
}

func (g *gate) Collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	n := g.calls.Add(1)
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	ch <- prometheus.MustNewConstMetric(fakeDesc, prometheus.GaugeValue, float64(n), "gate")
	return nil
}

func (g *gate) Close() error { return nil }

// scrapePage gathers the Set as one scrape that arrived at since and ends
// after timeout, as "name labels value" lines.
func scrapePage(t *testing.T, s *collectors.Set, since time.Time, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.WithContext(ctx, since))
	fams, err := reg.Gather()
	if err != nil {
		t.Error(err)
	}
	var b strings.Builder
	for _, f := range fams {
		if f.GetName() == "netsonde_collector_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			b.WriteString(f.GetName())
			for _, l := range m.GetLabel() {
				b.WriteString(" " + l.GetName() + "=" + l.GetValue())
			}
			fmt.Fprintf(&b, " %g\n", m.GetGauge().GetValue()+m.GetCounter().GetValue())
		}
	}
	return b.String()
}

// Four scrapes at once share one collection: the collector is called once,
// every page is whole (its metric, up 1, no timeout) and says so in
// netsonde_collector_collections_total. A scrape arriving after that
// collection finished gets a new one.
func TestOverlappingScrapesShareOneCollection(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	s := startSet(t, collectors.Enabled{Name: "gate", Factory: factory(g, nil)})
	pages := make(chan string, 4)
	for range 4 {
		go func() { pages <- scrapePage(t, s, time.Now(), 5*time.Second) }()
	}
	testenv.Eventually(t, 5*time.Second, "the collector called", func() bool { return g.calls.Load() > 0 })
	time.Sleep(100 * time.Millisecond) // the other three get to it
	close(g.release)
	want := "netsonde_collector_collections_total collector=gate 1\n" +
		"netsonde_collector_timeout_total collector=gate 0\n" +
		"netsonde_collector_up collector=gate reason= 1\n" +
		"netsonde_fake_value which=gate 1\n"
	for i := range 4 {
		if page := <-pages; page != want {
			t.Errorf("scrape %d of 4 at once:\n%s\nwant\n%s", i+1, page, want)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("4 scrapes at once called the collector %d times; want 1", n)
	}
	want = strings.ReplaceAll(want, "gate 1\n", "gate 2\n")
	if page := scrapePage(t, s, time.Now(), 5*time.Second); page != want {
		t.Errorf("a scrape after the shared one:\n%s\nwant\n%s", page, want)
	}
}

// A scrape is served a collection that finished after it arrived (it was
// waiting for a --web.max-requests slot), and one that finished before it
// arrived is never served: a page is never older than its scrape.
func TestScrapeServedNothingOlderThanItsArrival(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	close(g.release)
	s := startSet(t, collectors.Enabled{Name: "gate", Factory: factory(g, nil)})
	arrived := time.Now()
	first := scrapePage(t, s, time.Now(), 5*time.Second)
	late := scrapePage(t, s, arrived, 5*time.Second)
	if !strings.Contains(first, "which=gate 1\n") || first != late {
		t.Errorf("a scrape that arrived before the collection finished:\n%s\nwant the first's page:\n%s", late, first)
	}
	if page := scrapePage(t, s, time.Now(), 5*time.Second); !strings.Contains(page, "which=gate 2\n") {
		t.Errorf("a scrape that arrived after it finished was served it:\n%s", page)
	}
}

// Scrapers with different timeouts share a collection that takes 300 ms:
// the one with 100 ms reports it timed out (and counts it), the one with
// 5 s gets it whole. The collection is not cut at the first's deadline.
func TestSharedCollectionCutOffPerScraper(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	s := startSet(t, collectors.Enabled{Name: "gate", Factory: factory(g, nil)})
	long := make(chan string, 1)
	go func() { long <- scrapePage(t, s, time.Now(), 5*time.Second) }()
	testenv.Eventually(t, 5*time.Second, "the collector called", func() bool { return g.calls.Load() > 0 })
	short := scrapePage(t, s, time.Now(), 100*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	close(g.release)
	if want := "netsonde_collector_up collector=gate reason=timeout 0\n"; !strings.Contains(short, want) {
		t.Errorf("the 100 ms scrape: no %q in\n%s", want, short)
	}
	want := "netsonde_collector_collections_total collector=gate 1\n" +
		"netsonde_collector_timeout_total collector=gate 1\n" +
		"netsonde_collector_up collector=gate reason= 1\n" +
		"netsonde_fake_value which=gate 1\n"
	if page := <-long; page != want {
		t.Errorf("the 5 s scrape:\n%s\nwant\n%s", page, want)
	}
}
