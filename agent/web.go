package agent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/version"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/series"
)

func newMux(cfg Config, reg *prometheus.Registry, set *collectors.Set, logger *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(cfg.TelemetryPath, newScrapeHandler(cfg.MaxRequests, reg, set, logger))
	mux.Handle(CapturePath, newCaptureHandler(cfg, set, logger))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	// Ready once every collector has been started or has failed: a node
	// without conntrack or BTF still serves everything else, so a down
	// collector must not hold back a DaemonSet rollout.
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-set.Ready():
			w.Write([]byte("ready\n"))
		default:
			http.Error(w, "collectors starting", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := landing.Execute(w, landingData{
			Version:       version.Info(),
			TelemetryPath: cfg.TelemetryPath,
			Collectors:    set.States(),
		}); err != nil {
			logger.Debug("landing page", "err", err)
		}
	})
	if cfg.EnablePprof {
		// Off by default: profiles show internals and a CPU profile
		// costs CPU on every node it is asked of.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

type landingData struct {
	Version       string
	TelemetryPath string
	Collectors    []collectors.State
}

var landing = template.Must(template.New("landing").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>netsonde</title>
<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;text-align:left}.down{color:#b00}.up{color:#070}</style>
</head><body>
<h1>netsonde</h1>
<p>Kubernetes network health agent. {{.Version}}</p>
<p><a href="{{.TelemetryPath}}">Metrics</a> · <a href="/healthz">Health</a> · <a href="/readyz">Readiness</a></p>
<h2>Collectors</h2>
<table><tr><th>collector</th><th>state</th><th>reason</th><th>detail</th></tr>
{{range .Collectors}}<tr><td title="{{.Help}}">{{.Name}}</td>
{{if not .Started}}<td>starting</td><td></td><td></td>
{{else if .Up}}<td class="up">up</td><td></td><td></td>
{{else}}<td class="down">down</td><td>{{.Reason}}</td><td>{{.Error}}</td>{{end}}</tr>
{{end}}</table>
</body></html>
`))

// scrapeHandler serves the telemetry path: at most cap scrapes collect and
// render at once (--web.max-requests, as node_exporter has), and each one's
// collectors are cut off before the scraper's own timeout, so the page
// always comes back in time. A page is rendered into memory and its slot
// given back before a byte is sent, so a client that reads slowly, or
// never, holds its own connection only, not a slot another scraper needs;
// the write has the scrape's deadline.
type scrapeHandler struct {
	slots  chan struct{} // nil: no cap
	reg    prometheus.Gatherer
	set    *collectors.Set
	opts   promhttp.HandlerOpts
	logger *slog.Logger

	encoder series.Encoder // the text formats' (series.CanWrite)
}

func newScrapeHandler(maxRequests int, reg prometheus.Gatherer, set *collectors.Set, logger *slog.Logger) *scrapeHandler {
	h := &scrapeHandler{
		reg: reg,
		set: set,
		opts: promhttp.HandlerOpts{
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
			ErrorHandling:     promhttp.ContinueOnError,
			EnableOpenMetrics: true,
		},
		logger: logger,
	}
	if maxRequests > 0 {
		h.slots = make(chan struct{}, maxRequests)
	}
	return h
}

func (h *scrapeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	timeout := scrapeTimeout(r)
	begin := time.Now()
	page := getPage()
	defer putPage(page)
	h.render(page, r, begin, timeout)
	if r.Context().Err() != nil {
		return // the client left
	}
	// The scraper gives up at its timeout: writing long past it is for
	// nobody, and a client that never reads must not hold its connection.
	// But a page rendered late (a loaded node past the collection
	// deadline's margin) still gets writeGrace to go out, rather than a
	// connection cut before its first byte: fresh-node at a load average
	// of 20 saw a 0.5 s scrape end in EOF. net/http sets the server's
	// WriteTimeout again before the next request on this connection.
	deadline := begin.Add(timeout)
	if soonest := time.Now().Add(writeGrace); deadline.Before(soonest) {
		deadline = soonest
	}
	if err := http.NewResponseController(w).SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		h.logger.Debug("scrape write deadline", "err", err)
	}
	page.send(w)
}

// render writes the response into page, in a slot of --web.max-requests.
func (h *scrapeHandler) render(page *pageWriter, r *http.Request, begin time.Time, timeout time.Duration) {
	if h.slots != nil {
		// A scrape over the cap waits for a slot for part of its
		// budget rather than being turned away at once: Prometheus
		// does not retry, so a burst of other clients would otherwise
		// cost it a whole scrape interval. Waiters are served in
		// arrival order (a channel's queue is FIFO).
		wait := time.NewTimer(timeout / 2)
		select {
		case h.slots <- struct{}{}:
			wait.Stop()
			defer func() { <-h.slots }()
		case <-wait.C:
			page.Header().Set("Retry-After", "1")
			http.Error(page, "too many concurrent scrapes (--web.max-requests)", http.StatusServiceUnavailable)
			return
		case <-r.Context().Done():
			wait.Stop()
			return
		}
	}
	ctx, cancel := context.WithDeadline(r.Context(), begin.Add(timeout-collectMargin(timeout)))
	defer cancel()
	if format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultOpenMetricsAcceptedFormats()...); series.CanWrite(format) {
		h.serveRendered(ctx, begin, page, r, format)
		return
	}
	// Other formats go through promhttp whole, as they always did.
	// The Set is registered per scrape, in a registry of its own, so its
	// collectors get this scrape's deadline: Gatherer has no context.
	own := prometheus.NewRegistry()
	if err := own.Register(h.set.WithContext(ctx, begin)); err != nil {
		h.logger.Error("registering collectors for a scrape", "err", err)
		http.Error(page, "internal error", http.StatusInternalServerError)
		return
	}
	promhttp.HandlerFor(prometheus.Gatherers{h.reg, own}, h.opts).ServeHTTP(page, r)
}

// pageWriter is a response kept in memory until it is whole.
type pageWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (p *pageWriter) Header() http.Header { return p.header }
func (p *pageWriter) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}
func (p *pageWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.body.Write(b)
}

// send writes the response to w, with its length: the scraper knows how
// much is coming, and nothing is chunked.
func (p *pageWriter) send(w http.ResponseWriter) {
	for k, v := range p.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(p.body.Len()))
	w.WriteHeader(cmp.Or(p.code, http.StatusOK))
	w.Write(p.body.Bytes())
}

// maxPooledPage keeps a page that grew unusually large (a burst of
// series) from being held by the pool for good.
const maxPooledPage = 8 << 20

var pagePool = sync.Pool{New: func() any { return &pageWriter{} }}

func getPage() *pageWriter {
	p := pagePool.Get().(*pageWriter)
	p.header, p.code = http.Header{}, 0
	p.body.Reset()
	return p
}

func putPage(p *pageWriter) {
	if p.body.Cap() > maxPooledPage {
		return
	}
	p.header = nil
	pagePool.Put(p)
}

// scrapeTimeout is the scraper's timeout from Prometheus' header, or
// collectors.DefaultCollectTimeout for a client that sends none.
func scrapeTimeout(r *http.Request) time.Duration {
	if v := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			return min(time.Duration(s*float64(time.Second)), 10*time.Minute)
		}
	}
	return collectors.DefaultCollectTimeout
}

// writeGrace is the least time a rendered page has to be written.
const writeGrace = time.Second

// collectMargin is the part of a scrape's budget kept for what follows
// collection (encoding, compression, the network): a tenth, at least 50 ms
// and at most half a second, as blackbox_exporter's --timeout-offset.
func collectMargin(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 50*time.Millisecond), 500*time.Millisecond)
}
