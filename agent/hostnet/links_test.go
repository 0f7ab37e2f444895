package hostnet_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/internal/testenv"
)

// With an event socket far too small for a burst of 600 new interfaces the
// kernel drops events (ENOBUFS); the watcher must notice, re-read every
// link, and end with exactly the kernel's view.
func TestResyncAfterOverflow(t *testing.T) {
	ns := testenv.NewNetns(t)
	var w *hostnet.Watcher
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := ns.Do(func() error {
		var err error
		// The kernel rounds the buffer up to its minimum (a few KiB):
		// a handful of link messages.
		w, err = hostnet.NewWatcher(slog.New(slog.DiscardHandler), hostnet.WatcherOptions{ReceiveBufferSize: 1})
		if err != nil {
			return err
		}
		return w.Start(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	changed, stop := w.Subscribe()
	defer stop()

	var batch strings.Builder
	for i := range 300 {
		fmt.Fprintf(&batch, "link add o%da mtu %d type veth peer name o%db mtu %d\n", i, 1300+i, i, 1300+i)
	}
	cmd := ns.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
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
