package collectors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"time"
)

// Poller is the background read of a collector whose scrape serves from
// memory (netdev, ethtool, neighbour): the scrape stays free of I/O, and
// a slow or failing kernel answer costs a stale value, never a scrape.
type Poller struct {
	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// StartPoller reads once before it returns, so that the first scrape has
// everything and a kernel that refuses the read keeps the collector down:
// that error comes back as Down, "not_permitted" for EPERM or EACCES (a
// seccomp or LSM policy), else reason. Then it reads every interval until
// Stop; a failed read is logged under what and the last good one stays.
func StartPoller(ctx context.Context, every time.Duration, logger *slog.Logger, what, reason string, read func() error) (*Poller, error) {
	if err := read(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			reason = "not_permitted"
		}
		return nil, Down(reason, err)
	}
	p := &Poller{done: make(chan struct{})}
	ctx, p.stop = context.WithCancel(ctx)
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := read(); err != nil {
				logger.Warn(what+": reading failed; serving the last read until the next", "err", err)
			}
		}
	}()
	return p, nil
}

// Stop ends the reads and waits for one under way. A nil Poller (a
// collector made without one, as in a unit test) and a second Stop do
// nothing.
func (p *Poller) Stop() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.stop()
		<-p.done
	})
}
