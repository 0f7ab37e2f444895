package tcpconnect_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/tcpconnect"
	"github.com/netsonde/netsonde/internal/testenv"
)

// pods is a resolver that names the test's namespaces as pods, as the
// Kubernetes resolver names a pod's sandbox.
type pods map[uint64]cluster.Pod

func (p pods) ByNetns(ino uint64) (cluster.Pod, bool) { v, ok := p[ino]; return v, ok }
func (pods) ByIP(netip.Addr) (cluster.Pod, bool)      { return cluster.Pod{}, false }
func (pods) ByHostInterface(int) (cluster.Pod, bool)  { return cluster.Pod{}, false }
func (pods) PeerNodes(int) []cluster.Node             { return nil }

// gatherer runs the collector in the test process, with pods named.
type gatherer struct{ c collectors.Collector }

func (gatherer) Describe(chan<- *prometheus.Desc) {}
func (g gatherer) Collect(ch chan<- prometheus.Metric) {
	if err := g.c.Collect(context.Background(), ch); err != nil {
		panic(err)
	}
}

func startInProcess(t *testing.T, named pods) func() testenv.Metrics {
	t.Helper()
	return startHook(t, named, "auto")
}

func startHook(t *testing.T, named pods, hook string) func() testenv.Metrics {
	t.Helper()
	testenv.RequireRoot(t)
	// The host network view as the agent runs it, reading namespaces
	// again every 100 ms so that one deleted is seen gone soon.
	view, err := hostnet.New(hostnet.Options{Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	view.Start(ctx)
	c, err := tcpconnect.New(collectors.Deps{Logger: slog.New(slog.DiscardHandler), Pods: named, Net: view},
		tcpconnect.Options{Attach: hook, ForgetAfter: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(gatherer{c})
	return func() testenv.Metrics {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		m := testenv.Metrics{}
		for _, f := range fams {
			m[f.GetName()] = f
		}
		return m
	}
}

func podOf(ns *testenv.Netns) map[string]string {
	return map[string]string{"namespace": "test", "pod": ns.Name}
}

func named(t *testing.T, nss ...*testenv.Netns) pods {
	p := pods{}
	for _, ns := range nss {
		p[ns.Cookie(t)] = cluster.Pod{Namespace: "test", Name: ns.Name}
	}
	return p
}

// dialFrom connects from local port sport (0: any) in ns to addr and
// returns the connection or the error.
func dialFrom(ns *testenv.Netns, sport int, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		if sport != 0 {
			d.LocalAddr = &net.TCPAddr{Port: sport}
		}
		var err error
		c, err = d.Dial("tcp4", addr)
		return err
	})
	return c, err
}

// Two client namespaces with the same address, each with its own server
// namespace with the same address: the same 4-tuples (source ports fixed)
// succeed in one and are refused in the other, and each pod gets its own.
// Both hooks count the same.
func TestSameTupleTwoNamespaces(t *testing.T) {
	for _, hook := range []string{"tp_btf", "raw_tp"} {
		t.Run(hook, func(t *testing.T) { sameTuple(t, hook) })
	}
}

func sameTuple(t *testing.T, hook string) {
	c1, s1, c2, s2 := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, c1, s1, "c0", "s0", "198.18.92.2/24", "198.18.92.1/24", 0)
	testenv.Veth(t, c2, s2, "c0", "s0", "198.18.92.2/24", "198.18.92.1/24", 0)
	listen(t, s1, "198.18.92.1:80")
	scrape := startHook(t, named(t, c1, s1, c2, s2), hook)

	const est, refused = 7, 3
	for i := 0; i < est; i++ {
		c, err := dialFrom(c1, 40000+i, "198.18.92.1:80")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for i := 0; i < refused; i++ {
		if _, err := dialFrom(c2, 40000+i, "198.18.92.1:80"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect in the second namespace: %v, want refused", err)
		}
	}
	m := scrape()
	check := func(ns *testenv.Netns, result string, want float64) {
		t.Helper()
		l := podOf(ns)
		l["result"] = result
		if got := m.Sum("netsonde_tcp_connects_total", l); got != want {
			t.Errorf("%s %s: %v, want %v", ns.Name, result, got, want)
		}
	}
	check(c1, "established", est)
	check(c1, "refused", 0)
	check(c2, "established", 0)
	check(c2, "refused", refused)
	check(s1, "established", 0)
	if v, ok := m.Value("netsonde_bpf_program_attached", map[string]string{"program": "inet_sock_set_state"}); !ok || v != 1 {
		t.Errorf("inet_sock_set_state not attached")
	}
	if _, ok := m.Value("netsonde_bpf_program_attached", map[string]string{"program": "tcp_receive_reset", "hook": hook}); !ok {
		t.Errorf("tcp_receive_reset not attached by %s", hook)
	}
	if got := m.Sum("netsonde_tcp_resets_total", map[string]string{"namespace": "test", "pod": s2.Name, "direction": "sent"}); got != refused {
		t.Errorf("server 2 sent %v resets, want %v", got, refused)
	}
	if got := m.Sum("netsonde_tcp_resets_total", map[string]string{"namespace": "test", "pod": c2.Name, "direction": "received"}); got != refused {
		t.Errorf("client 2 received %v resets, want %v", got, refused)
	}
}

// A server that aborts every connection (SO_LINGER 0, then close) sends
// one reset per connection, and the client receives each.
func TestResetsSentAndReceived(t *testing.T) {
	client, server := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, client, server, "c0", "s0", "198.18.93.2/24", "198.18.93.1/24", 0)
	var ln net.Listener
	if err := server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "198.18.93.1:80")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 1))
			tc := c.(*net.TCPConn)
			tc.SetLinger(0) // close sends RST, not FIN
			tc.Close()
		}
	}()
	scrape := startInProcess(t, named(t, client, server))

	const n = 20
	for i := 0; i < n; i++ {
		c, err := dialFrom(client, 0, "198.18.93.1:80")
		if err != nil {
			t.Fatal(err)
		}
		// The server aborts once this byte is in: the handshake is long
		// over by then, so the reset cannot race the connect.
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		// Wait for the reset: a read on an aborted connection fails with
		// ECONNRESET, and the socket is closed with nothing left to send.
		_, err = c.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read %d: %v, want connection reset", i, err)
		}
		c.Close()
	}
	m := scrape()
	for _, w := range []struct {
		ns        *testenv.Netns
		direction string
		want      float64
	}{{server, "sent", n}, {client, "received", n}, {server, "received", 0}, {client, "sent", 0}} {
		l := podOf(w.ns)
		l["direction"] = w.direction
		if got := m.Sum("netsonde_tcp_resets_total", l); got != w.want {
			t.Errorf("%s %s: %v resets, want %v", w.ns.Name, w.direction, got, w.want)
		}
	}
}

// 10,000 short connections: each is counted once, each client socket's
// smoothed RTT is sampled once as it closes, and nothing stays in the
// in-flight map. A connect held in SYN_SENT by a SYN drop shows in the
// in-flight gauge first, so the gauge is seen to count.
func TestChurnLeavesNothingInFlight(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	client, server := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, client, server, "c0", "s0", "198.18.94.2/24", "198.18.94.1/24", 0)
	testenv.DropSYNs(t, server, 82)
	listen(t, server, "198.18.94.1:80")
	scrape := startInProcess(t, named(t, client, server))

	held := make(chan error, 1)
	go func() {
		held <- client.Do(func() error {
			_, err := net.DialTimeout("tcp4", "198.18.94.1:82", time.Second)
			return err
		})
	}()
	testenv.Eventually(t, time.Second, "the held connect in flight", func() bool {
		return scrape().Sum("netsonde_tcp_connects_in_flight", podOf(client)) == 1
	})
	if err := <-held; err == nil {
		t.Fatal("connect through the SYN drop succeeded")
	}

	const n = 10000
	start := time.Now()
	err := client.Do(func() error {
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp4", "198.18.94.1:80")
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			// The server closes first: wait for its FIN so the client
			// socket goes through LAST_ACK, not TIME_WAIT.
			io.Copy(io.Discard, c)
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections in %v", n, time.Since(start))
	est := podOf(client)
	est["result"] = "established"
	var m testenv.Metrics
	testenv.Eventually(t, 5*time.Second, "every client socket closed", func() bool {
		m = scrape()
		return m.Sum("netsonde_tcp_srtt_seconds", podOf(client)) == n
	})
	if got := m.Sum("netsonde_tcp_connects_total", est); got != n {
		t.Fatalf("established %v, want %v", got, n)
	}
	if got := m.Sum("netsonde_tcp_connect_duration_seconds", podOf(client)); got != n {
		t.Fatalf("%v connect durations, want %v", got, n)
	}
	// Per pod: other namespaces on the machine may have connects in
	// flight at any time.
	inflight := m.Sum("netsonde_tcp_connects_in_flight", podOf(client))
	t.Logf("in flight after churn: %v", inflight)
	if inflight != 0 {
		t.Fatalf("%v connections left in the in-flight map", inflight)
	}
}

// A namespace that goes away (its pod deleted) takes its series with it
// once --tcpconnect.forget-after has passed.
func TestVanishedNamespaceForgotten(t *testing.T) {
	testenv.RequireRoot(t)
	server := testenv.NewNetns(t)
	// Made and deleted here: testenv's namespaces are deleted at the end.
	gone := &testenv.Netns{Name: testenv.RandomName("nsd-")}
	testenv.Run(t, "ip", "netns", "add", gone.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", gone.Name).Run() })
	gone.Exec(t, "ip", "link", "set", "lo", "up")
	testenv.Veth(t, gone, server, "c0", "s0", "198.18.99.2/24", "198.18.99.1/24", 0)
	listen(t, server, "198.18.99.1:80")
	scrape := startInProcess(t, named(t, gone, server))

	c, err := dialFrom(gone, 0, "198.18.99.1:80")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	est := podOf(gone)
	est["result"] = "established"
	if got := scrape().Sum("netsonde_tcp_connects_total", est); got != 1 {
		t.Fatalf("established %v, want 1", got)
	}
	testenv.Run(t, "ip", "netns", "del", gone.Name)
	testenv.Eventually(t, 10*time.Second, "the vanished namespace's series gone", func() bool {
		return len(scrape().Series("netsonde_tcp_connects_total", podOf(gone))) == 0
	})
}

// A SYN answered by an ICMP host-unreachable (here an nftables reject)
// fails the connect with EHOSTUNREACH: an answer, but not a refusal, so
// error, not refused or timeout. A connect the kernel gives up on (two
// SYNs dropped, TCP_SYNCNT=1) is a timeout.
func TestICMPUnreachableIsError(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	client, server := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, client, server, "c0", "s0", "198.18.88.2/24", "198.18.88.1/24", 0)
	server.Exec(t, "nft", "add table inet rej; add chain inet rej in { type filter hook input priority 0; }; add rule inet rej in tcp dport 83 reject with icmp type host-unreachable; add rule inet rej in tcp dport 84 drop")
	scrape := startInProcess(t, named(t, client, server))
	const n = 5
	for i := 0; i < n; i++ {
		if _, err := dialFrom(client, 0, "198.18.88.1:83"); !errors.Is(err, syscall.EHOSTUNREACH) {
			t.Fatalf("connect: %v, want host unreachable", err)
		}
	}
	err := client.Do(func() error {
		d := net.Dialer{Timeout: 20 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1) })
			return serr
		}}
		_, err := d.Dial("tcp4", "198.18.88.1:84")
		return err
	})
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("connect through the SYN drop: %v, want timed out", err)
	}
	m := scrape()
	for result, want := range map[string]float64{"error": n, "refused": 0, "timeout": 1, "established": 0} {
		l := podOf(client)
		l["result"] = result
		if got := m.Sum("netsonde_tcp_connects_total", l); got != want {
			t.Errorf("%s: %v, want %v (all: %v)", result, got, want, m.Series("netsonde_tcp_connects_total", podOf(client)))
		}
	}
}
