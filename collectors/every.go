package collectors

import (
	"context"
	"time"
)

// Every calls fn every interval until ctx ends, then closes done: the
// background read of a collector whose scrape reads memory only.
func Every(ctx context.Context, interval time.Duration, done chan<- struct{}, fn func()) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}
