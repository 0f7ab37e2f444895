package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Veth links namespace a (interface ifa, address ipa as CIDR) to b (ifb,
// ipb) with a veth pair of the given MTU (0: the kernel's default) and
// brings both ends up.
func Veth(t testing.TB, a, b *Netns, ifa, ifb, ipa, ipb string, mtu int) {
	t.Helper()
	args := []string{"link", "add", ifa, "netns", a.Name}
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	args = append(args, "type", "veth", "peer", "name", ifb, "netns", b.Name)
	if mtu > 0 {
		args = append(args, "mtu", strconv.Itoa(mtu))
	}
	Run(t, "ip", args...)
	a.Exec(t, "ip", "addr", "add", ipa, "dev", ifa)
	b.Exec(t, "ip", "addr", "add", ipb, "dev", ifb)
	a.Exec(t, "ip", "link", "set", ifa, "up")
	b.Exec(t, "ip", "link", "set", ifb, "up")
}

// Pod makes a namespace behind a veth from node, as a CNI wires a pod:
// its eth0 has podIP (a /24) and a default route to gwIP, which is the
// address of hostIf, the veth's end in node. node forwards between its
// pods (its own ip_forward, a per-namespace setting). It returns the pod's
// namespace and hostIf's index in node.
func Pod(t testing.TB, node *Netns, hostIf, podIP, gwIP string) (*Netns, int) {
	t.Helper()
	pod := NewNetns(t)
	Veth(t, pod, node, "eth0", hostIf, podIP+"/24", gwIP+"/24", 0)
	pod.Exec(t, "ip", "route", "add", "default", "via", gwIP)
	if err := node.Do(func() error {
		// /proc/sys/net is the thread's namespace's: not a global setting.
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("forwarding in %s: %v", node.Name, err)
	}
	return pod, node.IfIndex(t, hostIf)
}

// SendUDP sends n datagrams of size bytes from an unconnected socket in ns
// to dst (host:port), pausing 1 ms every pace datagrams (0: never) so no
// receive backlog overflows: only the drops a test means to cause happen.
func SendUDP(t testing.TB, ns *Netns, dst string, size, n, pace int) {
	t.Helper()
	err := ns.Do(func() error {
		// Unconnected: on a connected socket an ICMP port unreachable
		// would fail the next send, and that datagram never leave.
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to, err := net.ResolveUDPAddr("udp4", dst)
		if err != nil {
			return err
		}
		buf := make([]byte, size)
		for i := 0; i < n; i++ {
			if _, err := c.WriteTo(buf, to); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
			if pace > 0 && i%pace == pace-1 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// SendDropped sends n one-byte datagrams from ns to dst (host:port) that a
// rule on the way out drops: the sends' errors (EPERM) are expected and
// not checked, only that the socket could be made.
func SendDropped(t testing.TB, ns *Netns, dst string, n int) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := net.Dial("udp4", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			c.Write([]byte("x"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Netstat reads one counter of ns's /proc/net/FILE (snmp or netstat: a
// "Group:" header line followed by a values line), e.g. Tcp RetransSegs.
func Netstat(t testing.TB, ns *Netns, file, group, name string) float64 {
	t.Helper()
	out := ns.Exec(t, "cat", "/proc/net/"+file)
	s := bufio.NewScanner(strings.NewReader(out))
	var header []string
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 0 || f[0] != group+":" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, h := range header {
			if h == name && i < len(f) {
				v, _ := strconv.ParseFloat(f[i], 64)
				return v
			}
		}
	}
	t.Fatalf("%s %s not in /proc/net/%s", group, name, file)
	return 0
}

// SYNDialer returns a dialer whose connects send an unanswered SYN again
// retries times (TCP_SYNCNT) before they fail, within timeout.
func SYNDialer(timeout time.Duration, retries int) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, retries) }); err != nil {
			return err
		}
		return serr
	}}
}

// DropSYNs makes ns drop every TCP segment arriving for port (nftables,
// in the namespace's own ruleset): a connect to it is never answered.
func DropSYNs(t testing.TB, ns *Netns, port int) {
	t.Helper()
	RequireCommand(t, "nft")
	ns.Exec(t, "nft", fmt.Sprintf("add table inet syn; add chain inet syn in { type filter hook input priority 0; }; add rule inet syn in tcp dport %d drop", port))
}

var ntableStat = regexp.MustCompile(`(entries|table_fulls|res_failed) (\d+)`)

// Ntable reads `ip -s ntable`'s entries, table_fulls and res_failed of one
// neighbour table (arp_cache, ndisc_cache): the kernel's, shared by every
// namespace.
func Ntable(t testing.TB, name string) map[string]float64 {
	t.Helper()
	out := Run(t, "ip", "-s", "ntable", "show", "name", name)
	got := map[string]float64{}
	for _, m := range ntableStat.FindAllStringSubmatch(out, -1) {
		if _, seen := got[m[1]]; !seen {
			got[m[1]], _ = strconv.ParseFloat(m[2], 64)
		}
	}
	if len(got) != 3 {
		t.Fatalf("no entries, table_fulls or res_failed for %s in ip -s ntable:\n%s", name, out)
	}
	return got
}
