package collectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestPollerFirstReadDecidesUp(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dump: %w", syscall.EPERM), "not_permitted"},
		{fmt.Errorf("dump: %w", syscall.EACCES), "not_permitted"},
		{errors.New("dump: truncated"), "netlink_error"},
	} {
		p, err := StartPoller(t.Context(), time.Hour, quiet, "test", "netlink_error", func() error { return c.err })
		if p != nil || ReasonOf(err, "") != c.want {
			t.Errorf("first read %v: poller %v, reason %q, want none and %q", c.err, p, ReasonOf(err, ""), c.want)
		}
	}
}

func TestPollerReadsOnAfterFailuresAndStops(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var reads atomic.Int64
	p, err := StartPoller(context.Background(), time.Millisecond, quiet, "test", "netlink_error", func() error {
		if reads.Add(1)%2 == 0 {
			return errors.New("every other read fails")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for reads.Load() < 10 {
		time.Sleep(time.Millisecond)
	}
	p.Stop()
	p.Stop() // twice: nothing
	after := reads.Load()
	time.Sleep(20 * time.Millisecond)
	if reads.Load() != after {
		t.Errorf("%d reads after Stop", reads.Load()-after)
	}
	var none *Poller
	none.Stop()
}
