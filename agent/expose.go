package agent

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// serveRendered serves a scrape in a format the text encoder writes
// (series.CanWrite) as promhttp would: the same status, headers and
// compression, the same page.
func (h *scrapeHandler) serveRendered(ctx context.Context, since time.Time, w http.ResponseWriter, r *http.Request, format expfmt.Format) {
	ch := make(chan prometheus.Metric, 256)
	go func() {
		h.set.CollectSince(ctx, since, ch)
		close(ch)
	}()
	page := h.encoder.Gather(h.reg, ch)
	defer page.Release()
	if len(page.Errs) > 0 {
		h.opts.ErrorLog.Println("error gathering metrics:", page.Errs)
		if page.Empty() {
			http.Error(w, "An error has occurred while serving metrics:\n\n"+page.Errs.Error(), http.StatusInternalServerError)
			return
		}
	}

	w.Header().Add("Vary", "Accept")
	w.Header().Add("Vary", "Accept-Encoding")
	w.Header().Set("Content-Type", string(format))
	out := io.Writer(w)
	if acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzipPool.Get().(*gzip.Writer)
		gz.Reset(w)
		defer func() {
			gz.Close()
			gzipPool.Put(gz)
		}()
		out = gz
	}
	for _, err := range page.Write(out, format, nameFilter(r)) {
		h.opts.ErrorLog.Println("error encoding and sending metric family:", err)
	}
}

// nameFilter is promhttp's name[] query parameter: only those families.
func nameFilter(r *http.Request) map[string]bool {
	if r.URL == nil {
		return nil
	}
	names := r.URL.Query()["name[]"]
	if len(names) == 0 {
		return nil
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// acceptsGzip negotiates Accept-Encoding as promhttp does with its offers
// identity and gzip: the offer with the highest q wins, identity on a tie,
// and none with q=0.
func acceptsGzip(r *http.Request) bool {
	best, bestQ := "identity", -1.0
	for _, offer := range []string{"identity", "gzip"} {
		for _, v := range r.Header.Values("Accept-Encoding") {
			for spec := range strings.SplitSeq(v, ",") {
				value, params, _ := strings.Cut(spec, ";")
				value = strings.ToLower(strings.TrimSpace(value))
				if value != "*" && value != offer {
					continue
				}
				q := 1.0
				for p := range strings.SplitSeq(params, ";") {
					if k, qv, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.TrimSpace(k) == "q" {
						if f, err := strconv.ParseFloat(strings.TrimSpace(qv), 64); err == nil {
							q = f
						}
					}
				}
				if q > bestQ {
					best, bestQ = offer, q
				}
			}
		}
	}
	return best == "gzip" && bestQ > 0
}

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return w }}
