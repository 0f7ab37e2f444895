package kube

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// RouteKlog sends client-go's log lines (klog) through the agent's logger,
// so they are structured and in --log.format like every other line, and
// rate-limits them: while the API server is away a reflector logs the same
// error on every retry, which is noise, not news. The first line of a kind
// passes at once; repeats within every are dropped and counted, and the
// next one to pass says how many were ("suppressed").
func RouteKlog(logger *slog.Logger, every time.Duration) {
	klog.SetSlogLogger(slog.New(NewRateLimitHandler(logger.With("component", "client-go").Handler(), every)))
}

// NewRateLimitHandler passes a record to next unless one with the same
// level, message and attributes (but the error) passed less than every ago.
func NewRateLimitHandler(next slog.Handler, every time.Duration) slog.Handler {
	return &rateLimitHandler{next: next, every: every, state: &rateLimitState{seen: map[string]*seenLine{}}}
}

type rateLimitHandler struct {
	next  slog.Handler
	every time.Duration
	// prefix distinguishes the handlers WithAttrs and WithGroup derive
	// (logr makes one per WithValues), which share one state.
	prefix string
	state  *rateLimitState
}

type rateLimitState struct {
	mu   sync.Mutex
	seen map[string]*seenLine
}

type seenLine struct {
	last       time.Time
	suppressed int
}

// maxSeenLines bounds the memory of lines seen: errors with ever-changing
// text would otherwise grow it for ever. Clearing it lets one line of each
// kind through again, which is harmless.
const maxSeenLines = 1024

func (h *rateLimitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *rateLimitHandler) Handle(ctx context.Context, r slog.Record) error {
	var key strings.Builder
	fmt.Fprintf(&key, "%s\x00%s\x00%s", h.prefix, r.Level, r.Message)
	// The error's text is left out of the key: client-go's carries the
	// URL of the request, whose timeout parameter is random, so no two
	// would match. A line of a kind per reflector per window, with the
	// count of those suppressed, is the information.
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "err" && a.Key != "error" {
			fmt.Fprintf(&key, "\x00%s=%v", a.Key, a.Value)
		}
		return true
	})
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	h.state.mu.Lock()
	s := h.state.seen[key.String()]
	if s != nil && now.Sub(s.last) < h.every {
		s.suppressed++
		h.state.mu.Unlock()
		return nil
	}
	suppressed := 0
	if s != nil {
		suppressed = s.suppressed
	}
	if len(h.state.seen) >= maxSeenLines {
		clear(h.state.seen)
	}
	h.state.seen[key.String()] = &seenLine{last: now}
	h.state.mu.Unlock()
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *rateLimitHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	p := h.prefix
	for _, a := range attrs {
		p += fmt.Sprintf("\x01%s=%v", a.Key, a.Value)
	}
	return &rateLimitHandler{next: h.next.WithAttrs(attrs), every: h.every, prefix: p, state: h.state}
}

func (h *rateLimitHandler) WithGroup(name string) slog.Handler {
	return &rateLimitHandler{next: h.next.WithGroup(name), every: h.every, prefix: h.prefix + "\x02" + name, state: h.state}
}
