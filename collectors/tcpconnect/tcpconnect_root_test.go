package tcpconnect_test

import (
	"net"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/netsonde/netsonde/internal/testenv"
)

// histogram returns the count and the cumulative count at le of the one
// histogram series of name matching labels.
func histogram(t *testing.T, m testenv.Metrics, name string, labels map[string]string, le float64) (count, atLE uint64) {
	t.Helper()
	s := m.Series(name, labels)
	if len(s) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, labels, len(s))
	}
	h := s[0].Metric.GetHistogram()
	return h.GetSampleCount(), bucket(h, le)
}

func bucket(h *dto.Histogram, le float64) uint64 {
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	return 0
}

// dialN dials addr n times from ns, concurrently, each with timeout, and
// returns how many connected; connections are closed at once.
func dialN(t *testing.T, ns *testenv.Netns, addr string, n int, timeout time.Duration) int {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	ok := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		// Each dial on its own thread switched into ns: a goroutine
		// started inside Do would run on some other thread, in the
		// test's own namespace.
		go func() {
			defer wg.Done()
			ns.Do(func() error {
				c, err := net.DialTimeout("tcp4", addr, timeout)
				if err != nil {
					return err
				}
				c.Close()
				mu.Lock()
				ok++
				mu.Unlock()
				return nil
			})
		}()
	}
	wg.Wait()
	return ok
}

// listen starts a listener in ns that accepts and closes connections.
func listen(t *testing.T, ns *testenv.Netns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// The scenario, between two scrapes: a listener in the "host"
// namespace, a client in another (the pod) that makes 50 connections to
// it, 30 to a port nobody listens on and 10 to a port whose SYNs nftables
// drops, giving up after 1.5 s. The agent runs in the client's namespace
// and counts only it, so the second scrape's own connection to the agent
// is the one extra established connection.
func TestConnectOutcomes(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	host, pod := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, host, pod, "h0", "p0", "198.18.90.1/24", "198.18.90.2/24", 0)
	testenv.DropSYNs(t, host, 82)
	listen(t, host, "198.18.90.1:80")
	agent := testenv.StartAgent(t, pod, "--collector.disable-defaults", "--collector.tcpconnect", "--tcpconnect.netns=own")

	before := agent.Scrape(t)
	if n := dialN(t, pod, "198.18.90.1:80", 50, 5*time.Second); n != 50 {
		t.Fatalf("%d of 50 connections established", n)
	}
	if n := dialN(t, pod, "198.18.90.1:81", 30, 5*time.Second); n != 0 {
		t.Fatalf("%d connections to a closed port established", n)
	}
	start := time.Now()
	if n := dialN(t, pod, "198.18.90.1:82", 10, 1500*time.Millisecond); n != 0 {
		t.Fatalf("%d connections through the SYN drop established", n)
	}
	t.Logf("timeouts took %v", time.Since(start))
	after := agent.Scrape(t)

	delta := func(result string) float64 {
		l := map[string]string{"result": result}
		return after.Sum("netsonde_tcp_connects_total", l) - before.Sum("netsonde_tcp_connects_total", l)
	}
	est, ref, tmo, errs := delta("established"), delta("refused"), delta("timeout"), delta("error")
	t.Logf("established +%v refused +%v timeout +%v error +%v", est, ref, tmo, errs)
	if est != 51 || ref != 30 || tmo != 10 || errs != 0 {
		t.Fatalf("established +%v (want 51: 50 and the scrape's own), refused +%v (30), timeout +%v (10), error +%v (0)", est, ref, tmo, errs)
	}
	n0, le0 := histogram(t, before, "netsonde_tcp_connect_duration_seconds", nil, 0.1)
	n1, le1 := histogram(t, after, "netsonde_tcp_connect_duration_seconds", nil, 0.1)
	if float64(n1-n0) != est || float64(le1-le0) != est {
		t.Fatalf("connect durations: %d timed, %d under 0.1 s; want %v each", n1-n0, le1-le0, est)
	}
	if v, ok := after.Value("netsonde_bpf_program_attached", map[string]string{"program": "inet_sock_set_state", "hook": "tp_btf"}); !ok || v != 1 {
		t.Fatalf("inet_sock_set_state not attached by tp_btf:\n%s", agent.Log)
	}
}
