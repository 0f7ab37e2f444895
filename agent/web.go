package agent

import (
	"html/template"
	"log/slog"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"

	"github.com/netsonde/netsonde/collectors"
)

func newMux(cfg Config, reg *prometheus.Registry, set *collectors.Set, logger *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(cfg.TelemetryPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: cfg.MaxRequests,
		EnableOpenMetrics:   true,
	}))
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
