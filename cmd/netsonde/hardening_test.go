package main_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// dialIn opens n TCP connections to addr from inside ns.
func dialIn(t *testing.T, ns *testenv.Netns, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	err := ns.Do(func() error {
		for range n {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d: %w", len(conns)+1, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

// keepAliveClient is a scraper as Prometheus is one: its connections stay
// open between scrapes.
func keepAliveClient(ns *testenv.Netns, conns int) *http.Client {
	dial := ns.HTTPClient().Transport.(*http.Transport).DialContext
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns},
		Timeout:   30 * time.Second,
	}
}

// 500 slowloris connections (a request line and headers sent one byte a
// second, never finished) and 100 scrapers scraping as fast as they can do
// not stop a normal scrape from answering within 1 s: the server bounds the
// time a request's headers may take and the number of scrapes collecting at
// once.
func TestSlowClientsAndConcurrentScrapes(t *testing.T) {
	const (
		slow     = 500
		scrapers = 100
		duration = 8 * time.Second // longer than readHeaderTimeout (5 s)
	)
	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--web.max-requests=10")
	addr := a.URL[len("http://"):]

	// The baseline: one scrape on an idle agent.
	baseline := timedScrape(t, ns.HTTPClient(), a.URL)

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup

	conns := dialIn(t, ns, addr, slow)
	var slowClosed atomic.Int64 // closed by the server before the test stopped sending
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := []byte("GET /metrics HTTP/1.1\r\nHost: " + addr + "\r\nX-Slow: " + string(make([]byte, 64)))
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; ; i++ {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write(req[i%len(req) : i%len(req)+1]); err != nil {
					slowClosed.Add(1)
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}

	var ok, rejected, failed atomic.Int64
	client := keepAliveClient(ns, scrapers)
	for range scrapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", a.URL+"/metrics", nil)
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusServiceUnavailable, http.StatusTooManyRequests:
					rejected.Add(1)
				default:
					failed.Add(1)
				}
			}
		}()
	}

	// The normal scrape, as Prometheus makes it, once a second under load.
	var took []time.Duration
	normal := ns.HTTPClient()
	for range int(duration/time.Second) - 1 {
		time.Sleep(time.Second)
		took = append(took, timedScrape(t, normal, a.URL))
	}
	cancel()
	wg.Wait()
	client.CloseIdleConnections()

	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	worst := took[len(took)-1]
	t.Logf("idle scrape %v; under load: median %v, worst %v of %d; %d slow connections cut by the server; %d scrapes served, %d turned away, %d failed",
		baseline, took[len(took)/2], worst, len(took), slowClosed.Load(), ok.Load(), rejected.Load(), failed.Load())
	// 1 s is the promise; the bound asserted is generous, because two
	// CPUs are shared with other tests. The figure goes to the table.
	if worst > 5*time.Second {
		t.Errorf("a normal scrape took %v under load", worst)
	}
	if slowClosed.Load() < slow*9/10 {
		t.Errorf("the server cut %d of %d slowloris connections within %v; want all (ReadHeaderTimeout)", slowClosed.Load(), slow, duration)
	}
	if failed.Load() > 0 {
		t.Errorf("%d scrapes failed (neither served nor turned away)", failed.Load())
	}
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "slow-clients",
		Injected: fmt.Sprintf("%d slowloris connections (headers one byte a second) and %d scrapers in a loop, --web.max-requests=10, for %v", slow, scrapers, duration),
		Lost:     fmt.Sprintf("nothing: %d scrapes served, %d turned away with 503 by the cap, %d failed", ok.Load(), rejected.Load(), failed.Load()),
		Recovery: fmt.Sprintf("a normal scrape answered in %v at worst (median %v, idle %v); slow connections cut after 5 s", worst.Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), baseline.Round(time.Millisecond)),
		Figures: map[string]any{
			"slow_connections": slow, "slow_connections_cut": slowClosed.Load(), "scrapers": scrapers,
			"scrapes_ok": ok.Load(), "scrapes_rejected": rejected.Load(), "scrapes_failed": failed.Load(),
			"normal_scrape_worst_ms": worst.Milliseconds(), "normal_scrape_median_ms": took[len(took)/2].Milliseconds(),
			"idle_scrape_ms": baseline.Milliseconds(),
		},
	})
}

// timedScrape scrapes once, fails the test on anything but 200 and returns
// how long the whole page took.
func timedScrape(t *testing.T, c *http.Client, url string) time.Duration {
	t.Helper()
	begin := time.Now()
	resp, err := c.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("normal scrape: %v", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(begin)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("normal scrape: HTTP %d, %v", resp.StatusCode, err)
	}
	return took
}
