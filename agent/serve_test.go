package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
)

// With basic auth and a rate limit in --web.config.file, a flood of
// unauthenticated scrapes and wrong passwords uses up the limit (one
// request answered 401, the other 199 answered 429), and the kubelet's
// probes still answer 200, every one of them, during the flood and after:
// they are exempt from the rate limit as from basic auth.
func TestProbesExemptFromRateLimit(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "web.yml")
	cfg := fmt.Sprintf("basic_auth_users:\n  prom: %s\nrate_limit:\n  interval: 1h\n  burst: 1\n", hash)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	set := collectors.NewSet(logger, nil)
	set.Start(context.Background(), collectors.Deps{Logger: logger, Pods: cluster.None{}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &http.Server{Handler: newMux(Config{TelemetryPath: "/metrics"}, prometheus.NewRegistry(), set, logger)}
	go serve([]net.Listener{l}, server, path, logger)
	t.Cleanup(func() { server.Close() })
	base := "http://" + l.Addr().String()

	get := func(path, user string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, "wrong")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const flood, probes = 200, 100
	var mu sync.Mutex
	floodCodes, probeCodes := map[int]int{}, map[int]int{}
	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			code := get("/metrics", []string{"", "prom", "nobody"}[i%3])
			mu.Lock()
			floodCodes[code]++
			mu.Unlock()
		})
	}
	probe := func() {
		for _, p := range []string{"/healthz", "/readyz"} {
			code := get(p, "")
			mu.Lock()
			probeCodes[code]++
			mu.Unlock()
		}
	}
	for range probes / 4 {
		wg.Go(probe) // during the flood
	}
	wg.Wait()
	for range probes / 4 {
		probe() // after it
	}
	if floodCodes[http.StatusUnauthorized] != 1 || floodCodes[http.StatusTooManyRequests] != flood-1 {
		t.Errorf("flood of %d: %v; want one 401 (the burst) and %d 429", flood, floodCodes, flood-1)
	}
	if probeCodes[http.StatusOK] != probes || len(probeCodes) != 1 {
		t.Errorf("%d probes under and after the flood: %v; want all 200", probes, probeCodes)
	}
}
