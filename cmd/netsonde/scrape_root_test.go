package main_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// manyInterfaces gives ns n veth interfaces, up, their peers in a
// namespace of their own, with one `ip -batch` per side.
func manyInterfaces(t *testing.T, ns *testenv.Netns, n int) {
	t.Helper()
	peers := testenv.NewNetns(t)
	var add, up strings.Builder
	for i := range n {
		fmt.Fprintf(&add, "link add m%d type veth peer name m%dp netns %s\n", i, i, peers.Name)
		fmt.Fprintf(&up, "link set m%d up\n", i)
	}
	cmd := ns.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(add.String() + up.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
}

// agentCPU is the agent process's CPU time so far (user and system).
func agentCPU(t *testing.T, a *testenv.Agent) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command's closing parenthesis; utime and
	// stime are the 14th and 15th of the whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// pageCheck says what a page lacks: a family of the reference page, a
// collector's up, or a collector reported up 0.
func pageCheck(ref testenv.Metrics, page string) string {
	m, err := testenv.ParseMetrics(page)
	if err != nil {
		return err.Error()
	}
	var lacks []string
	for name := range ref {
		if m[name] == nil {
			lacks = append(lacks, "family "+name)
		}
	}
	for _, s := range ref.Series("netsonde_collector_up", nil) {
		c := s.Labels["collector"]
		if v, ok := m.Value("netsonde_collector_up", map[string]string{"collector": c, "reason": ""}); !ok || v != 1 {
			got := m.Series("netsonde_collector_up", map[string]string{"collector": c})
			lacks = append(lacks, fmt.Sprintf("collector %s up (%v)", c, got))
		}
	}
	return strings.Join(lacks, ", ")
}

// collections is each collector's netsonde_collector_collections_total.
func collections(m testenv.Metrics) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m.Series("netsonde_collector_collections_total", nil) {
		out[s.Labels["collector"]] = s.Value
	}
	return out
}

// Four scrapers at once, 50 rounds, on an agent with every default
// collector and 1,000 interfaces: every page is whole (every family of a
// page taken alone, every collector up, none timed out), and the four
// scrapes of a round share collections: each collector is called at most
// three times a round (56 to 88 times in 50 rounds here; before shared
// collections, once per page: 200). The agent's CPU per
// round with four scrapers against one is logged and recorded: with
// shared collections it grows by the encoding only.
func TestConcurrentScrapesWholePages(t *testing.T) {
	const ifaces, scrapers, rounds = 1000, 4, 50
	ns := testenv.NewNetns(t)
	manyInterfaces(t, ns, ifaces)
	a := testenv.StartAgent(t, ns)
	// Killed, not stopped, at the end: after the fragments collector has
	// handed 1,000 interfaces over to TCX, detaching them (20 ms each
	// under the RTNL lock) takes longer than StopAgent's 2 s. The
	// namespaces go, and everything attached in them with them.
	defer a.Kill(t)
	ref := a.Scrape(t)
	if len(ref.Series("netsonde_interface_mtu_bytes", nil)) < ifaces {
		t.Fatalf("reference page has %d MTU series; want %d interfaces and more", len(ref.Series("netsonde_interface_mtu_bytes", nil)), ifaces)
	}

	clients := make([]*http.Client, scrapers)
	for i := range clients {
		clients[i] = keepAliveClient(ns, 1)
	}
	scrape := func(c *http.Client) string {
		req, _ := http.NewRequest("GET", a.URL+"/metrics", nil)
		req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "10")
		resp, err := c.Do(req)
		if err != nil {
			return "error: " + err.Error()
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("error: HTTP %d, %v", resp.StatusCode, err)
		}
		return string(b)
	}
	// rounds scrapes by n scrapers at once; the pages that were not whole.
	run := func(n int) (bad []string, cpu time.Duration) {
		before := agentCPU(t, a)
		for r := range rounds {
			pages := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { pages[i] = scrape(clients[i]) })
			}
			wg.Wait()
			for i, p := range pages {
				if lacks := pageCheck(ref, p); lacks != "" {
					bad = append(bad, fmt.Sprintf("round %d scraper %d: %s", r, i, lacks))
				}
			}
		}
		return bad, agentCPU(t, a) - before
	}

	_, alone := run(1)
	before := collections(a.Scrape(t))
	bad, together := run(scrapers)
	after := collections(a.Scrape(t))
	for _, b := range bad {
		t.Error(b)
	}
	pages := rounds * scrapers
	var most float64
	var per []string
	for c, n := range after {
		// Less one: the scrape that read these counters.
		made := n - before[c] - 1
		most = max(most, made)
		per = append(per, fmt.Sprintf("%s %g", c, made))
		if made > 3*rounds {
			t.Errorf("collector %s collected %g times for %d pages in %d rounds of %d at once; want at most %d", c, made, pages, rounds, scrapers, 3*rounds)
		}
	}
	if len(after) == 0 {
		t.Fatal("no netsonde_collector_collections_total on the page")
	}
	ratio := float64(together) / float64(alone)
	t.Logf("%d pages, %d not whole; collections per collector: %s; agent CPU per round: %v alone, %v with %d at once (%.2fx)",
		pages, len(bad), strings.Join(per, ", "), alone/rounds, together/rounds, scrapers, ratio)
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "concurrent-scrapes",
		Injected: fmt.Sprintf("%d scrapers at once, %d rounds, every default collector, %d interfaces", scrapers, rounds, ifaces),
		Lost:     fmt.Sprintf("nothing: %d of %d pages whole (every family, every collector up, none timed out)", pages-len(bad), pages),
		Recovery: fmt.Sprintf("nothing to recover: at most %g collections per collector for %d pages; agent CPU per round %.2fx that of one scraper", most, pages, ratio),
		Figures: map[string]any{
			"scrapers": scrapers, "rounds": rounds, "interfaces": ifaces, "pages": pages, "pages_not_whole": len(bad),
			"most_collections_per_collector": most,
			"cpu_ms_per_round_alone":         (alone / rounds).Milliseconds(), "cpu_ms_per_round_together": (together / rounds).Milliseconds(),
		},
	})
}

// kibRange is "29" or "29-31": the least and most of n, in KiB.
func kibRange(n []int) string {
	lo, hi := slices.Min(n)>>10, slices.Max(n)>>10
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// stalledReader connects from ns with a 1 KiB receive buffer, sends one
// scrape request and never reads the answer.
func stalledReader(t *testing.T, ns *testenv.Netns, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
			})
			return errors.Join(err, serr)
		}}
		var err error
		c, err = d.Dial("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: %s\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	return c
}

// Four clients across a veth, each with a 1 KiB receive buffer, ask for
// the page of an agent with 2,000 interfaces and --web.max-requests=4 and
// never read it: a fifth scrape still answers 200 within 2 s, since a
// slot is given back once the page is rendered, not once it is read (on
// main's code, the four held every slot for the 90 s WriteTimeout and the
// fifth got 503 after 5 s). The stalled connections are closed by the
// write deadline, the scrape's timeout (10 s), not the WriteTimeout.
func TestStalledReadersHoldNoSlot(t *testing.T) {
	const ifaces, stalled = 2000, 4
	ns, clients := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, ns, clients, "sa0", "sb0", "198.18.78.1/24", "198.18.78.2/24", 1500)
	manyInterfaces(t, ns, ifaces)
	addr := "198.18.78.1:10333"
	a := testenv.StartAgent(t, ns, "--web.listen-address="+addr, fmt.Sprintf("--web.max-requests=%d", stalled))
	defer a.Kill(t) // as in TestConcurrentScrapesWholePages
	size := len(a.Scrape(t).Series("netsonde_interface_mtu_bytes", nil))

	begin := time.Now()
	conns := make([]net.Conn, stalled)
	for i := range conns {
		conns[i] = stalledReader(t, clients, addr)
	}
	// Their pages are rendered and stuck in the send buffers by now.
	time.Sleep(time.Second)

	client := clients.HTTPClient()
	start := time.Now()
	req, _ := http.NewRequest("GET", a.URL+"/metrics", nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "10")
	resp, err := client.Do(req)
	var page []byte
	if err == nil {
		page, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("the fifth scrape, with %d clients not reading: HTTP %d, %v after %v", stalled, code, err, took)
	}
	if took > 2*time.Second {
		t.Errorf("the fifth scrape took %v with %d clients not reading; want under 2 s", took, stalled)
	}

	// The stalled connections end at the write deadline, the scrape's
	// 10 s: read past it, each has a part of the page and then its end.
	// (Held open by the server, a read would let the page through whole
	// and then wait on a connection kept alive.)
	time.Sleep(time.Until(begin.Add(11 * time.Second)))
	var got []int
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c)
		got = append(got, int(n))
		if err != nil {
			t.Errorf("a stalled connection read %d bytes, then %v; want the end of a page cut at the write deadline", n, err)
		} else if int(n) >= len(page) {
			t.Errorf("a stalled connection got %d bytes, the page is %d: not cut at the write deadline", n, len(page))
		}
	}
	t.Logf("page of %d bytes (%d MTU series); fifth scrape answered in %v; the stalled connections got %v bytes before the write deadline closed them", len(page), size, took, got)
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "stalled-readers",
		Injected: fmt.Sprintf("%d clients across a veth with a 1 KiB receive buffer request the page (%d KiB, %d interfaces) and never read, --web.max-requests=%d", stalled, len(page)>>10, ifaces, stalled),
		Lost:     fmt.Sprintf("nothing: a fifth scrape answered 200 in %v", took.Round(time.Millisecond)),
		Recovery: fmt.Sprintf("slots given back once each page was rendered; the stalled connections closed by the scrape's write deadline (10 s), %s KiB of each page sent by then", kibRange(got)),
		Figures: map[string]any{
			"stalled_clients": stalled, "interfaces": ifaces, "page_bytes": len(page), "max_requests": stalled,
			"fifth_scrape_ms": took.Milliseconds(), "stalled_bytes_sent": got,
		},
	})
}
