package sockets_test

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/testenv"
)

const (
	errorsMetric = "netsonde_socket_errors_total"
	podAIP       = "198.18.121.2"
	podBIP       = "198.18.122.2"
)

// node is a test node: a real kube-apiserver naming pods shop/a and
// shop/b, each a namespace behind a veth, and the agent on the node with
// only the collectors given, reading namespaces every second.
type node struct {
	node, a, b *testenv.Netns
	agent      *testenv.Agent
}

func startNode(t *testing.T, args ...string) *node {
	n := &node{node: testenv.NewNetns(t)}
	k := testenv.StartKubeAPI(t, n.node)
	k.CreatePod(t, "shop", "a", "node-a", podAIP)
	k.CreatePod(t, "shop", "b", "node-a", podBIP)
	n.a, _ = testenv.Pod(t, n.node, "vsocka", podAIP, "198.18.121.1")
	n.b, _ = testenv.Pod(t, n.node, "vsockb", podBIP, "198.18.122.1")
	n.agent = testenv.StartAgent(t, n.node, append([]string{"--kubeconfig=" + k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--hostnet.refresh-interval=1s"}, args...)...)
	testenv.Eventually(t, 15*time.Second, "pods shop/a and shop/b found in their namespaces", func() bool {
		found, _ := n.agent.Scrape(t).Value("netsonde_kube_pods_attributed", nil)
		return found == 2
	})
	return n
}

func podLabels(pod, counter string) map[string]string {
	return map[string]string{"namespace": "shop", "pod": pod, "counter": counter}
}

// socketIn makes a socket in ns, bound to addr:port; it is closed when
// the test ends.
func socketIn(t *testing.T, ns *testenv.Netns, typ int, addr [4]byte, port int, setup func(fd int) error) int {
	t.Helper()
	var fd int
	if err := ns.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if setup != nil {
			if err := setup(fd); err != nil {
				return err
			}
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: addr, Port: port})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// stable reads a counter of ns's kernel until two reads 300 ms apart agree.
func stable(t *testing.T, ns *testenv.Netns, file, group, name string) float64 {
	t.Helper()
	v := testenv.Netstat(t, ns, file, group, name)
	for {
		time.Sleep(300 * time.Millisecond)
		w := testenv.Netstat(t, ns, file, group, name)
		if w == v {
			return v
		}
		v = w
	}
}

// TestListenOverflowsAgainstRealAPIServer: pod A listens with a backlog
// of 8 and never accepts; 50 connects from the node overflow its accept
// queue. The agent's TcpExtListenOverflows and TcpExtListenDrops for
// shop/a equal what A's own kernel counts (both 0 before: a new
// namespace), and shop/b, whose kernel counted none, has no series.
func TestListenOverflowsAgainstRealAPIServer(t *testing.T) {
	n := startNode(t, "--collector.sockets")
	ln := socketIn(t, n.a, unix.SOCK_STREAM, [4]byte{198, 18, 121, 2}, 8080, nil)
	if err := unix.Listen(ln, 8); err != nil {
		t.Fatal(err)
	}
	var clients []int
	if err := n.node.Do(func() error {
		for range 50 {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			clients = append(clients, fd)
			if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{198, 18, 121, 2}, Port: 8080}); err != nil && !errors.Is(err, unix.EINPROGRESS) {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// One SYN retransmit (after 1 s) meets the full queue again, then the
	// clients close: A's counters stop.
	time.Sleep(1500 * time.Millisecond)
	for _, fd := range clients {
		unix.Close(fd)
	}
	for _, name := range []string{"ListenOverflows", "ListenDrops"} {
		n.sameAsKernel(t, "netstat", "TcpExt", name, 41)
	}
}

// TestUDPReceiveBufferErrorsAgainstRealAPIServer: pod A's UDP socket with
// a 4 KiB receive buffer is never read; 1,000 datagrams of 1,000 bytes
// from the node fill it. The agent's UdpRcvbufErrors and UdpInErrors for
// shop/a equal A's kernel's, shop/b has none.
func TestUDPReceiveBufferErrorsAgainstRealAPIServer(t *testing.T) {
	n := startNode(t, "--collector.sockets")
	socketIn(t, n.a, unix.SOCK_DGRAM, [4]byte{198, 18, 121, 2}, 9999, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
	})
	testenv.SendUDP(t, n.node, podAIP+":9999", 1000, 1000, 50)
	for _, name := range []string{"RcvbufErrors", "InErrors"} {
		n.sameAsKernel(t, "snmp", "Udp", name, 900)
	}
}

// sameAsKernel checks that the agent's counter for shop/a is exactly what
// A's kernel says once it stops counting (at least least, else the test
// made nothing to count), and that shop/b, whose kernel counted none, has
// no series.
func (n *node) sameAsKernel(t *testing.T, file, group, name string, least float64) {
	t.Helper()
	kernel := stable(t, n.a, file, group, name)
	if kernel < least {
		t.Fatalf("A's kernel counted %v %s%s, fewer than %v: the test made nothing to count", kernel, group, name, least)
	}
	n.agent.WaitSum(t, errorsMetric, podLabels("a", group+name), kernel)
	t.Logf("shop/a %s%s: agent = kernel = %v", group, name, kernel)
	if b := testenv.Netstat(t, n.b, file, group, name); b != 0 {
		t.Fatalf("B's kernel counted %v %s%s", b, group, name)
	}
	if s := n.agent.Scrape(t).Series(errorsMetric, podLabels("b", group+name)); len(s) != 0 {
		t.Errorf("shop/b has %v, want no series", s)
	}
}

// TestEphemeralPortsExhaustedAgainstRealAPIServer: pod A has 10 local
// ports (its own net.ipv4.ip_local_port_range) and holds 10 connections
// to one server on the node; 10 more connects fail with EADDRNOTAVAIL,
// and shop/a's tcp_connects_total{result="no_port"} rises by exactly 10,
// none of them an error or a timeout; shop/b has no no_port.
func TestEphemeralPortsExhaustedAgainstRealAPIServer(t *testing.T) {
	n := startNode(t, "--collector.tcpconnect")
	srv := socketIn(t, n.node, unix.SOCK_STREAM, [4]byte{198, 18, 121, 1}, 7000, nil)
	if err := unix.Listen(srv, 64); err != nil {
		t.Fatal(err)
	}
	const connects = "netsonde_tcp_connects_total"
	result := func(pod, r string) map[string]string {
		return map[string]string{"namespace": "shop", "pod": pod, "result": r}
	}
	before := n.agent.Scrape(t)
	testenv.ExhaustPorts(t, n.a, [4]byte{198, 18, 121, 1}, 7000)
	delta := func(m testenv.Metrics, pod, r string) float64 {
		return m.Sum(connects, result(pod, r)) - before.Sum(connects, result(pod, r))
	}
	n.agent.WaitSum(t, connects, result("a", "no_port"), before.Sum(connects, result("a", "no_port"))+10)
	m := n.agent.Scrape(t)
	for r, want := range map[string]float64{"no_port": 10, "established": 10, "error": 0, "timeout": 0, "refused": 0} {
		if got := delta(m, "a", r); got != want {
			t.Errorf("shop/a %s +%v, want +%v", r, got, want)
		}
	}
	if got := m.Sum(connects, result("b", "no_port")); got != 0 {
		t.Errorf("shop/b no_port %v, want 0", got)
	}
	t.Logf("shop/a: no_port +%v, established +%v, error +%v", delta(m, "a", "no_port"), delta(m, "a", "established"), delta(m, "a", "error"))
}
