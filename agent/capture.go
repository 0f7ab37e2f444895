package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/capture"
)

// CapturePath streams dropped packets to `netsonde capture --from`.
//
// Who can capture: whoever can scrape /metrics (the same TLS, basic auth
// and rate limit of --web.config.file). That is safe enough because a
// capture shows headers only (--snaplen past capture.DefaultSnaplen needs
// --capture.allow-payload on the agent), of packets the kernel already
// dropped, at --capture.max-rate at most per capture, a few captures at
// once (the kernel's slots), each ending with its client or its limits.
const CapturePath = "/capture"

// DefaultCaptureMaxRate is --capture.max-rate's default.
const DefaultCaptureMaxRate = 1000

func newCaptureHandler(cfg Config, set *collectors.Set, logger *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := capture.ParseQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.Snaplen > capture.DefaultSnaplen && !cfg.CaptureAllowPayload {
			http.Error(w, fmt.Sprintf("%v: --snaplen=%d: more than the headers (%d bytes) needs the agent's --capture.allow-payload",
				capture.ErrBadFilter, req.Snaplen, capture.DefaultSnaplen), http.StatusForbidden)
			return
		}
		req.Rate = cmpOr(cfg.CaptureMaxRate, DefaultCaptureMaxRate)
		c, err := set.Capturer()
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		// A capture lasts as long as its client wants: no write deadline
		// (the server's is 90 s). The read deadline is cleared too, as a
		// precaution: a 12 s capture outlives the 10 s read timeout
		// without it as well (TestCaptureStormRateLimited, tried).
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{})
		_ = rc.SetReadDeadline(time.Time{})
		enc := json.NewEncoder(w)
		started := false
		start := func() {
			if !started {
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.WriteHeader(http.StatusOK)
				started = true
			}
		}
		sum, err := c.Capture(r.Context(), req, func(p *capture.Packet) error {
			start()
			if err := enc.Encode(capture.Line{Packet: p}); err != nil {
				return err
			}
			return rc.Flush()
		})
		if err != nil && !started {
			status := http.StatusInternalServerError
			switch {
			case errors.Is(err, capture.ErrBadFilter):
				status = http.StatusBadRequest
			case errors.Is(err, collectors.ErrCaptureBusy):
				status = http.StatusTooManyRequests
			}
			http.Error(w, err.Error(), status)
			return
		}
		start()
		if err != nil {
			_ = enc.Encode(capture.Line{Error: err.Error()})
		}
		if r.Context().Err() == nil || !errors.Is(r.Context().Err(), context.Canceled) {
			_ = enc.Encode(capture.Line{Summary: &sum})
		}
		logger.Info("capture ended", "packets", sum.Packets, "rate_limited", sum.RateLimited, "ended", sum.Ended)
	}
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}
