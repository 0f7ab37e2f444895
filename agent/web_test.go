package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
)

// stuck collects nothing until released, whatever its context says.
type stuck struct{ release chan struct{} }

func (s stuck) Collect(context.Context, chan<- prometheus.Metric) error { <-s.release; return nil }
func (s stuck) Close() error                                            { return nil }

// Over HTTP, the scrape answers by the deadline Prometheus' header gives,
// less the margin, with the stuck collector reported timed out; a scrape
// over --web.max-requests waits for a slot rather than failing at once.
func TestScrapeHonoursPrometheusTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	logger := slog.New(slog.DiscardHandler)
	set := collectors.NewSet(logger, []collectors.Enabled{{Name: "stuck", Factory: func(context.Context, collectors.Deps) (collectors.Collector, error) {
		return stuck{release}, nil
	}}})
	set.Start(context.Background(), collectors.Deps{Logger: logger, Pods: cluster.None{}})
	srv := httptest.NewServer(newScrapeHandler(1, prometheus.NewRegistry(), set, logger))
	defer srv.Close()

	scrape := func(timeout string) (int, string, time.Duration) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", timeout)
		begin := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), time.Since(begin)
	}
	code, page, took := scrape("0.5")
	if code != 200 || !strings.Contains(page, `netsonde_collector_up{collector="stuck",reason="timeout"} 0`) {
		t.Errorf("HTTP %d:\n%s", code, page)
	}
	// 0.5 s less a 50 ms margin; the bound leaves room for a busy machine.
	if took < 400*time.Millisecond || took > 2*time.Second {
		t.Errorf("scrape with a 0.5 s timeout took %v", took)
	}

	// Two at once with room for one, the collector taking 200 ms: the
	// second waits its turn (up to half its 2 s budget) instead of a 503,
	// and is served the collection that finished while it waited, not a
	// second one of its own.
	slow := collectors.NewSet(logger, []collectors.Enabled{{Name: "slow", Factory: func(context.Context, collectors.Deps) (collectors.Collector, error) {
		return sleeper(200 * time.Millisecond), nil
	}}})
	slow.Start(context.Background(), collectors.Deps{Logger: logger, Pods: cluster.None{}})
	srv2 := httptest.NewServer(newScrapeHandler(1, prometheus.NewRegistry(), slow, logger))
	defer srv2.Close()
	pages := make(chan string, 2)
	for range 2 {
		go func() {
			req, _ := http.NewRequest("GET", srv2.URL, nil)
			req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "2")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("concurrent scrape over the cap: %v %v, want 200 after waiting", resp, err)
			}
			var b []byte
			if resp != nil {
				b, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			pages <- string(b)
		}()
	}
	for range 2 {
		if page := <-pages; !strings.Contains(page, `netsonde_collector_collections_total{collector="slow"} 1`+"\n") ||
			!strings.Contains(page, `netsonde_collector_up{collector="slow",reason=""} 1`) {
			t.Errorf("two scrapes at once over a cap of one: want both served one collection, whole:\n%s", page)
		}
	}
}

type sleeper time.Duration

func (s sleeper) Collect(context.Context, chan<- prometheus.Metric) error {
	time.Sleep(time.Duration(s))
	return nil
}
func (s sleeper) Close() error { return nil }

func TestScrapeTimeoutHeader(t *testing.T) {
	for h, want := range map[string]time.Duration{
		"": collectors.DefaultCollectTimeout, "10": 10 * time.Second, "0.25": 250 * time.Millisecond,
		"-1": collectors.DefaultCollectTimeout, "x": collectors.DefaultCollectTimeout, "1e9": 10 * time.Minute,
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		if h != "" {
			r.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", h)
		}
		if got := scrapeTimeout(r); got != want {
			t.Errorf("header %q: %v, want %v", h, got, want)
		}
	}
	for timeout, want := range map[time.Duration]time.Duration{
		100 * time.Millisecond: 50 * time.Millisecond, time.Second: 100 * time.Millisecond, time.Minute: 500 * time.Millisecond,
	} {
		if got := collectMargin(timeout); got != want {
			t.Errorf("margin of %v: %v, want %v", timeout, got, want)
		}
	}
}
