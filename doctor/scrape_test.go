package doctor

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPScraperReasons(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!DOCTYPE html><html><body>netsonde</body></html>")
	})
	mux.HandleFunc("/node", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# TYPE node_load1 gauge\nnode_load1 0.25\n")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "netsonde_collector_up{collector=\"drops\",reason=\"\"} 1\n")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + closed.Addr().String() + "/metrics"
	closed.Close()

	for _, tc := range []struct{ url, says string }{
		{dead, "does not answer: dial tcp"},
		{srv.URL + "/html", "answers HTML"},
		{srv.URL + "/node", "not netsonde metrics"},
		{srv.URL + "/nope", "answers HTTP 404"},
	} {
		s, err := HTTPScraper(srv.Client(), tc.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line saying %q", tc.url, err, tc.says)
		}
	}
	if _, err := HTTPScraper(srv.Client(), "localhost:10333"); err == nil {
		t.Error("a URL without scheme accepted")
	}
	s, _ := HTTPScraper(srv.Client(), srv.URL+"/metrics")
	if _, err := s(context.Background()); err != nil {
		t.Errorf("netsonde page refused: %v", err)
	}
}

func TestObserveWaitsTheDuration(t *testing.T) {
	var n atomic.Int32
	scrape := func(context.Context) (Snapshot, error) {
		n.Add(1)
		return Snapshot{}, nil
	}
	start := time.Now()
	o, err := Observe(context.Background(), scrape, 300*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 2 || o.Elapsed < 0.3 || time.Since(start) < 300*time.Millisecond {
		t.Errorf("%d scrapes, elapsed %v", n.Load(), o.Elapsed)
	}
}
