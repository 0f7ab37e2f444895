package hostnet_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/internal/testenv"
)

// With an event socket far too small for a burst of 600 new interfaces the
// kernel drops events (ENOBUFS); the watcher must notice, re-read every
// link, and end with exactly the kernel's view.
func TestResyncAfterOverflow(t *testing.T) {
	ns := testenv.NewNetns(t)
	w := tinyWatcher(t, ns)
	changed, stop := w.Subscribe()
	defer stop()

	ipBatch(t, ns, "link add o%da mtu %d type veth peer name o%db mtu %d\n", 300)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no change notification")
	}
	testenv.Eventually(t, 5*time.Second, "view has lo + 600 veths at their MTUs", func() bool {
		links := w.Links()
		if len(links) != 601 {
			return false
		}
		for _, l := range links {
			if l.Name == "lo" {
				continue
			}
			var i int
			var end string
			if _, err := fmt.Sscanf(l.Name, "o%d%s", &i, &end); err != nil || l.MTU != 1300+i || l.Kind != "veth" {
				return false
			}
		}
		return true
	})
	if w.Resyncs() < 2 {
		t.Errorf("resyncs = %d: the tiny buffer should have overflowed and forced a re-read", w.Resyncs())
	}
	t.Logf("resyncs: %d", w.Resyncs())
}

// Three overflows of the event socket (bursts of 600 links added, deleted
// and added again, into a few KiB of buffer) leave the watcher with the one
// subscribed socket and the open files it started with: each resubscribe
// closes the broken socket. Before, every overflow left it open and
// subscribed, the kernel queueing each later link event on it for nobody.
func TestNoSocketLeftAfterOverflows(t *testing.T) {
	ns := testenv.NewNetns(t)
	w := tinyWatcher(t, ns)
	files := openFiles(t)
	if n, _ := subscribed(t, ns); n != 1 {
		t.Fatalf("%d sockets subscribed to link events at start, want 1", n)
	}
	for round, step := range []struct {
		line  string
		links int
	}{
		{"link add o%da mtu %d type veth peer name o%db mtu %d\n", 601},
		{"link del o%da\n", 1},
		{"link add o%da mtu %d type veth peer name o%db mtu %d\n", 601},
	} {
		before := w.Resyncs()
		ipBatch(t, ns, step.line, 300)
		testenv.Eventually(t, 10*time.Second, fmt.Sprintf("round %d: the view re-read with %d links", round, step.links), func() bool {
			return w.Resyncs() > before && len(w.Links()) == step.links
		})
	}
	overflows := w.Resyncs() - 1
	var subs, queued, now int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		subs, queued = subscribed(t, ns)
		now = openFiles(t)
		if subs == 1 && now == files || time.Now().After(deadline) {
			break
		}
	}
	if subs != 1 || now != files {
		t.Fatalf("after %d overflows: %d sockets subscribed to link events (%d bytes queued), want 1; %d open files, %d at start", overflows, subs, queued, now, files)
	}
	t.Logf("%d overflows: 1 socket subscribed (%d bytes queued), %d open files as at start", overflows, queued, files)
}

// tinyWatcher starts a watcher of ns whose event socket is as small as the
// kernel allows (it rounds 1 byte up to a few KiB: a handful of link
// messages), until the test ends.
func tinyWatcher(t *testing.T, ns *testenv.Netns) *hostnet.Watcher {
	t.Helper()
	var w *hostnet.Watcher
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	err := ns.Do(func() error {
		var err error
		w, err = hostnet.NewWatcher(slog.New(slog.DiscardHandler), hostnet.WatcherOptions{ReceiveBufferSize: 1})
		if err != nil {
			return err
		}
		return w.Start(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// ipBatch runs n lines of format in ns with one ip -batch; format takes i,
// 1300+i, i, 1300+i (or fewer).
func ipBatch(t *testing.T, ns *testenv.Netns, format string, n int) {
	t.Helper()
	var batch strings.Builder
	for i := range n {
		args := []any{i, 1300 + i, i, 1300 + i}
		fmt.Fprintf(&batch, format, args[:strings.Count(format, "%d")]...)
	}
	cmd := ns.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
}

func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// subscribed counts this process's rtnetlink sockets in ns that are
// subscribed to link events (RTNLGRP_LINK), as the kernel lists them in
// /proc/net/netlink, and the bytes queued on them.
func subscribed(t *testing.T, ns *testenv.Netns) (n, queued int) {
	t.Helper()
	ours := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			ours[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var table []byte
	err = ns.Do(func() error {
		// thread-self: the namespace of the thread Do switched, not the
		// process's.
		table, err = os.ReadFile("/proc/thread-self/net/netlink")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[1] != "0" || !ours[f[9]] {
			continue
		}
		groups, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || groups&(1<<(unix.RTNLGRP_LINK-1)) == 0 {
			continue
		}
		rmem, _ := strconv.Atoi(f[4])
		n++
		queued += rmem
	}
	return n, queued
}
