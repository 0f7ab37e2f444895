package hostnet

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestReadCountersInsideNamespace: three refused connects inside a pinned
// namespace are its kernel's TcpAttemptFails 3 and TcpActiveOpens 3, read
// from inside it (the agent's own namespace says something else), equal
// to what `ip netns exec ... cat /proc/net/snmp` says; 200 reads leave no
// descriptor behind; a namespace deleted since the walk is an error, not
// a panic or a read of the wrong namespace.
func TestReadCountersInsideNamespace(t *testing.T) {
	ns := testenv.NewNetns(t)
	if err := ns.Do(func() error {
		for range 3 {
			if c, err := net.DialTimeout("tcp", "127.0.0.1:9", time.Second); err == nil {
				c.Close()
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("/run/netns", ns.Name)
	c, err := ReadCounters(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TcpAttemptFails", "TcpActiveOpens"} {
		kernel := testenv.Netstat(t, ns, "snmp", "Tcp", name[len("Tcp"):])
		if c[name] != 3 || float64(c[name]) != kernel {
			t.Errorf("%s = %d, want 3 (the namespace's kernel says %v)", name, c[name], kernel)
		}
	}
	if _, ok := c["TcpExtListenOverflows"]; !ok {
		t.Error("TcpExtListenOverflows missing")
	}
	if _, ok := c["Udp6RcvbufErrors"]; !ok {
		t.Error("Udp6RcvbufErrors missing (snmp6)")
	}
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	before := fds()
	for range 200 {
		if _, err := ReadCounters(path); err != nil {
			t.Fatal(err)
		}
	}
	if after := fds(); after > before {
		t.Errorf("%d descriptors before 200 reads, %d after", before, after)
	}
	if _, err := ReadCounters(filepath.Join("/run/netns", "nsd-never-made")); err == nil {
		t.Error("a namespace that does not exist read without error")
	}
}
