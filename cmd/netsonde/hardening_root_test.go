package main_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/netsonde/netsonde/internal/testenv"
)

// dialIn opens n TCP connections to addr from inside ns, from the local
// address from. A connection the server resets as it accepts it may fail
// its connect already: those are counted in reset, not returned.
func dialIn(t *testing.T, ns *testenv.Netns, from, addr string, n int) (conns []net.Conn, reset int) {
	t.Helper()
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		for i := range n {
			c, err := d.Dial("tcp", addr)
			if errors.Is(err, syscall.ECONNRESET) {
				reset++
				continue
			}
			if err != nil {
				return fmt.Errorf("connection %d: %w", i+1, err)
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
	return conns, reset
}

// keepAliveClient is a scraper as Prometheus is one: its connections stay
// open between scrapes.
func keepAliveClient(ns *testenv.Netns, conns int) *http.Client {
	return keepAliveClientFrom(ns, "", conns)
}

// keepAliveClientFrom is keepAliveClient with connections from the local
// address from ("": the kernel's choice).
func keepAliveClientFrom(ns *testenv.Netns, from string, conns int) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			d := net.Dialer{Timeout: 5 * time.Second}
			if from != "" {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
			}
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns},
		Timeout:   30 * time.Second,
	}
}

// 500 slowloris connections from one client address (a request line and
// headers sent one byte a second, never finished) and 100 scrapers from ten
// others scraping as fast as they can do not stop a normal scrape from
// answering within 1 s, and every page served is whole: the server bounds
// the connections of one client address (--web.max-connections-per-client,
// 32: the other 468 are refused at once, exactly), the time a request's
// headers may take and the number of scrapes collecting at once, and
// overlapping scrapes share collections instead of cutting each other's
// collectors off.
func TestSlowClientsAndConcurrentScrapes(t *testing.T) {
	const (
		slow     = 500
		scrapers = 100
		perAddr  = 10               // scrapers per client address
		connCap  = 32               // --web.max-connections-per-client's default
		duration = 10 * time.Second // twice readHeaderTimeout (5 s)
	)
	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--web.max-requests=10")
	addr := a.URL[len("http://"):]

	// The baseline: one scrape on an idle agent, and what a whole page
	// has: every collector up.
	baseline := timedScrape(t, ns.HTTPClient(), a.URL)
	_, ref := a.Get(t, "/metrics")
	var ups []string
	for l := range strings.Lines(ref) {
		if strings.HasPrefix(l, "netsonde_collector_up{") {
			ups = append(ups, l)
		}
	}
	if len(ups) == 0 {
		t.Fatalf("no netsonde_collector_up on the page:\n%s", ref)
	}

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup

	conns, reset := dialIn(t, ns, "127.0.0.2", addr, slow)
	var slowClosed atomic.Int64 // closed by the server before the test stopped sending
	slowClosed.Add(int64(reset))
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

	var ok, rejected, failed, partial atomic.Int64
	var firstPartial atomic.Value
	var clients []*http.Client
	for i := range scrapers / perAddr {
		clients = append(clients, keepAliveClientFrom(ns, fmt.Sprintf("127.0.1.%d", i+1), perAddr))
	}
	for i := range scrapers {
		client := clients[i/perAddr]
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
				page, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					if ctx.Err() == nil {
						failed.Add(1)
					}
				case resp.StatusCode == http.StatusOK:
					ok.Add(1)
					for _, up := range ups {
						if !bytes.Contains(page, []byte(up)) {
							partial.Add(1)
							firstPartial.CompareAndSwap(nil, fmt.Sprintf("no %q in\n%s", up, page))
							break
						}
					}
				case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests:
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
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	refused, _ := a.Scrape(t).Value("netsonde_http_connections_refused_total", nil)

	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	worst := took[len(took)-1]
	t.Logf("idle scrape %v; under load: median %v, worst %v of %d; %d slow connections cut by the server, %g refused at once; %d scrapes served (%d not whole), %d turned away, %d failed",
		baseline, took[len(took)/2], worst, len(took), slowClosed.Load(), refused, ok.Load(), partial.Load(), rejected.Load(), failed.Load())
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
	if partial.Load() > 0 {
		t.Errorf("%d of %d pages served were not whole; the first: %s", partial.Load(), ok.Load(), firstPartial.Load())
	}
	// All 500 were dialled while the first 32 waited for their headers
	// (5 s): the other 468 were refused as they were accepted.
	if refused != slow-connCap {
		t.Errorf("%g of %d slowloris connections from one address refused at once; want %d (a cap of %d per client)", refused, slow, slow-connCap, connCap)
	}
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "slow-clients",
		Injected: fmt.Sprintf("%d slowloris connections from one address (headers one byte a second) and %d scrapers in a loop from %d others, --web.max-requests=10, for %v", slow, scrapers, scrapers/perAddr, duration),
		Lost:     fmt.Sprintf("nothing: %d scrapes served, all whole, %d turned away with 503 by the cap, %d failed", ok.Load(), rejected.Load(), failed.Load()),
		Recovery: fmt.Sprintf("a normal scrape answered in %v at worst (median %v, idle %v); %g slow connections refused at once (%d per client), the rest cut after 5 s", worst.Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), baseline.Round(time.Millisecond), refused, connCap),
		Figures: map[string]any{
			"slow_connections": slow, "slow_connections_cut": slowClosed.Load(), "slow_connections_refused": refused, "scrapers": scrapers,
			"scrapes_not_whole": partial.Load(),
			"scrapes_ok":        ok.Load(), "scrapes_rejected": rejected.Load(), "scrapes_failed": failed.Load(),
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

// With basic auth and TLS in --web.config.file, every path but the
// kubelet's probes answers 401 without credentials, and everything is
// served over TLS ≥ 1.2 with a certificate curl verifies against a CA made
// here with openssl.
func TestAuthOnEveryEndpointAndTLS(t *testing.T) {
	testenv.RequireCommand(t, "openssl", "curl")
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	testenv.Run(t, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "1", "-subj", "/CN=netsonde test CA")
	testenv.Run(t, "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=netsonde")
	if err := os.WriteFile(p("san.ext"), []byte("subjectAltName=IP:127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "openssl", "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
		"-CAcreateserial", "-out", p("server.pem"), "-days", "1", "-extfile", p("san.ext"))
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// Relative paths: they are relative to the file, as in the toolkit.
	cfg := fmt.Sprintf("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\nbasic_auth_users:\n  prom: %s\n", hash)
	if err := os.WriteFile(p("web.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	ns := testenv.NewNetns(t)
	cmd := ns.Command(testenv.AgentBinary(t), "--web.listen-address=127.0.0.1:10333", "--web.config.file="+p("web.yml"), "--web.enable-pprof")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	const base = "https://127.0.0.1:10333"
	// curl prints the status (000 when the handshake fails).
	curl := func(args ...string) string {
		all := append([]string{"netns", "exec", ns.Name, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", p("ca.pem"), "--max-time", "5"}, args...)
		out, _ := exec.Command("ip", all...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	testenv.Eventually(t, 30*time.Second, "agent ready over TLS", func() bool { return curl(base+"/readyz") == "200" })

	for path, want := range map[string]string{
		"/healthz": "200", "/readyz": "200",
		"/metrics": "401", "/": "401", "/nope": "401", "/debug/pprof/": "401", "/metrics?x=/healthz": "401",
		"/capture?count=1": "401",
	} {
		if got := curl(base + path); got != want {
			t.Errorf("curl %s without credentials: %s, want %s", path, got, want)
		}
	}
	// /capture past the credentials: a malformed filter is the capture's
	// own refusal (400), not the guard's.
	for path, want := range map[string]string{"/metrics": "200", "/": "200", "/healthz": "200", "/debug/pprof/": "200",
		"/capture?protocol=quic": "400"} {
		if got := curl("-u", "prom:s3cret", base+path); got != want {
			t.Errorf("curl %s with credentials: %s, want %s", path, got, want)
		}
	}
	if got := curl("-u", "prom:wrong", base+"/metrics"); got != "401" {
		t.Errorf("curl with a wrong password: %s, want 401", got)
	}
	if got := curl("--tlsv1.2", "--tls-max", "1.2", "-u", "prom:s3cret", base+"/metrics"); got != "200" {
		t.Errorf("curl over TLS 1.2: %s, want 200", got)
	}
	if got := curl("--tlsv1.3", "-u", "prom:s3cret", base+"/metrics"); got != "200" {
		t.Errorf("curl over TLS 1.3: %s, want 200", got)
	}
	if got := curl("http://127.0.0.1:10333/metrics"); got == "200" {
		t.Errorf("plain HTTP served /metrics")
	}

	// TLS 1.1 is refused by the server (Go's client can still offer it;
	// curl's OpenSSL may refuse on its own side, which would prove nothing).
	client := ns.HTTPClient()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if resp, err := client.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("a TLS 1.1 client was served (HTTP %d)", resp.StatusCode)
	} else if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 client: %v; want a protocol version alert", err)
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", log.String())
	}
}
