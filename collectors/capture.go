package collectors

import (
	"context"
	"errors"

	"github.com/netsonde/netsonde/internal/capture"
)

// Capturer is a collector that can show the packets it counts: the drops
// collector, for `netsonde capture`. The agent reaches it through the Set,
// never by importing the collector.
type Capturer interface {
	// Capture streams the packets that match req to emit until req's
	// limits are reached, ctx ends (the client went away) or emit fails,
	// then detaches and returns the summary. A malformed request is an
	// error wrapping capture.ErrBadFilter; ErrCaptureBusy when every
	// capture slot is taken.
	Capture(ctx context.Context, req capture.Request, emit func(*capture.Packet) error) (capture.Summary, error)
}

// ErrCaptureBusy: as many captures run as the kernel program has room for.
var ErrCaptureBusy = errors.New("too many captures running at once; try again when one ends")

// ErrNoCapturer: no started collector can capture.
var ErrNoCapturer = errors.New("no collector can capture here: the drops collector is not enabled (--no-collector.drops) or is down")

// Capturer returns the first started collector that can capture.
func (s *Set) Capturer() (Capturer, error) {
	for _, m := range s.members {
		m.mu.Lock()
		c := m.c
		m.mu.Unlock()
		if cp, ok := c.(Capturer); ok {
			return cp, nil
		}
	}
	return nil, ErrNoCapturer
}
