package hostnet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
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
	c, err := ReadCounters(path, nil)
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
		if _, err := ReadCounters(path, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The count is the whole test process's, where the runtime and other
	// tests' goroutines open and close descriptors too (fresh-node saw
	// 10 → 11 once): a read that leaked would show as 200 more, so
	// anything under 100 is not this code's.
	if after := fds(); after-before >= 100 {
		t.Errorf("%d descriptors before 200 reads, %d after: one leaked per read", before, after)
	}
	if _, err := ReadCounters(filepath.Join("/run/netns", "nsd-never-made"), nil); err == nil {
		t.Error("a namespace that does not exist read without error")
	}
}

// countingHandler counts log records at Info or above.
type countingHandler struct {
	slog.Handler
	n *atomic.Int64
}

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		h.n.Add(1)
	}
	return nil
}

// vanishingSource deletes one pinned namespace right after the walk lists
// it: its last process exited between listing and reading.
type vanishingSource struct {
	onlySource
	vanish func()
}

func (v vanishingSource) Namespaces() map[uint64]string {
	out := v.onlySource.Namespaces()
	v.vanish()
	return out
}

// TestCountersChurn: 110 pods' namespaces created and deleted, three
// times over, with counters wanted: every one read while it exists (its
// own TcpExtListenOverflows 0, present), none left in the snapshot once
// deleted, no descriptor leaked, and a namespace deleted between the walk
// and the read skipped that round without a log line above debug.
func TestCountersChurn(t *testing.T) {
	testenv.RequireRoot(t)
	var logged atomic.Int64
	pins := map[string]bool{}
	src := onlySource{KernelSource: KernelSource{PinDirs: PinDirs}, pins: pins}
	var vanishing string
	v, err := New(Options{Logger: slog.New(countingHandler{slog.DiscardHandler, &logged}),
		Source: vanishingSource{onlySource: src, vanish: func() {
			if vanishing != "" {
				testenv.Run(t, "ip", "netns", "del", vanishing)
				vanishing = ""
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	v.WantCounters("TcpExtListenOverflows", "UdpRcvbufErrors")
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	v.refresh(t.Context(), true)
	before := fds()
	for round := range 3 {
		var names []string
		for i := range 110 {
			n := fmt.Sprintf("nsd-churn-%d-%d", round, i)
			testenv.Run(t, "ip", "netns", "add", n)
			t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
			pins[n] = true
			names = append(names, n)
		}
		vanishing = names[0]
		v.refresh(t.Context(), false)
		s := v.Snapshot()
		if got := len(s.Namespaces()); got != 109 {
			t.Fatalf("round %d: %d namespaces read, want 109 (110 less the one deleted after the walk)", round, got)
		}
		for _, n := range s.Namespaces() {
			if c, ok := n.Counters["TcpExtListenOverflows"]; !ok || c != 0 {
				t.Fatalf("round %d: %s counters %v, want TcpExtListenOverflows 0", round, n.Path, n.Counters)
			}
		}
		for _, n := range names[1:] {
			testenv.Run(t, "ip", "netns", "del", n)
		}
		v.refresh(t.Context(), false)
		if got := len(v.Snapshot().Namespaces()); got != 0 {
			t.Fatalf("round %d: %d namespaces left after all were deleted", round, got)
		}
	}
	if after := fds(); after > before {
		t.Errorf("%d descriptors before the churn, %d after", before, after)
	}
	if n := logged.Load(); n != 0 {
		t.Errorf("%d log lines above debug for namespaces that came and went", n)
	}
}
