// Package agent runs netsonde: it starts the enabled collectors, serves
// /metrics, /healthz, /readyz and a landing page, and shuts everything down
// when its context ends.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/agent/kube"
	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/dropreason"
)

// Config is everything the agent needs, parsed from flags by main.
type Config struct {
	Web           *web.FlagConfig
	TelemetryPath string
	// MaxRequests bounds concurrent scrapes (0: no limit).
	MaxRequests int
	// MaxConnsPerClient bounds the connections one client address may
	// have open (0: no limit).
	MaxConnsPerClient int
	// EnablePprof serves net/http/pprof under /debug/pprof/.
	EnablePprof bool
	Collectors  []collectors.Enabled
	ProcPath    string
	SysPath     string
	// HostNetInterval is how often the host network view reads every
	// namespace again (--hostnet.refresh-interval; 0: its default).
	HostNetInterval time.Duration
	// Deprecations are lines to log once at start: old flag spellings
	// that still work for now.
	Deprecations []string
	// PodIndex names pods by address without a cluster (the series-budget
	// test's fake); Kube's informers replace it when a cluster answers.
	PodIndex hostnet.PodIndex
	// HostNetSource and Proc replace the kernel under the host network
	// view and procfs (a test counts their calls); nil in production.
	HostNetSource hostnet.Source
	Proc          collectors.ProcFS
	// Kube, if set, is the cluster to attribute pods from; without a
	// cluster the agent runs standalone (Pods stays cluster.None).
	Kube *kube.Config
	// CaptureMaxRate bounds the packets a second one capture copies out
	// of the kernel (--capture.max-rate); CaptureAllowPayload lets a
	// capture keep more than the headers (--capture.allow-payload).
	CaptureMaxRate      int
	CaptureAllowPayload bool
	// ShutdownTimeout bounds how long in-flight requests may finish.
	ShutdownTimeout time.Duration
}

// steadyGCPercent is GOGC once the collectors have started (see Run).
const steadyGCPercent = 50

// startupLimit is the Go runtime's soft memory limit while the collectors
// start, unless GOMEMLIMIT or the container's limit is lower. Start-up
// makes garbage fast (BTF, ELF objects, verifier retries, the first
// netlink dumps, all collectors at once) and at Go's default GOGC the heap
// doubles before each GC: the start-up peak was 1.9× the steady RSS.
// At this limit the GC runs as the heap nears it instead (and never above
// half the CPU, the runtime's own cap), for a start-up some 0.1 s longer.
// The live heap at start is 8-12 MiB at 1,000 interfaces; the list of a
// 5,000-node cluster's names goes beyond it, and then the limit only makes
// the GC run more often.
const startupLimit = 24 << 20

// startupMemoryLimit lowers the runtime's soft memory limit to
// startupLimit and returns the limit to restore once start-up is over.
func startupMemoryLimit() int64 {
	steady := debug.SetMemoryLimit(-1)
	if os.Getenv("GOMEMLIMIT") == "" && steady > startupLimit {
		debug.SetMemoryLimit(startupLimit)
	}
	return steady
}

// The HTTP server's bounds. Scrapers send a few hundred bytes of headers at
// once and the agent's pages are small, so they are far from legitimate use:
//   - a request's headers must arrive within readHeaderTimeout, which ends a
//     slowloris connection (one byte a second) after 5 s;
//   - a scrape must be answered within writeTimeout, which is above the
//     longest scrape timeout Prometheus is usually given (60 s), since the
//     agent cuts collectors off at the scraper's own deadline anyway;
//   - an idle keep-alive connection lives idleTimeout, longer than the usual
//     scrape interval, so a scraper keeps its connection between scrapes;
//   - maxHeaderBytes leaves room for a bearer token or basic auth, not for a
//     megabyte of headers per connection (net/http's default).
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 90 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 16 << 10
)

// Run serves until ctx ends, then releases everything. It returns an error
// only for what must stop the agent: a bad web config file or an address it
// cannot listen on. Collectors that fail are reported, not fatal.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if cfg.Web.WebConfigFile != nil && *cfg.Web.WebConfigFile != "" {
		if err := web.Validate(*cfg.Web.WebConfigFile); err != nil {
			return fmt.Errorf("web config file %s: %w", *cfg.Web.WebConfigFile, err)
		}
	}
	listeners, err := listen(*cfg.Web.WebListenAddresses)
	if err != nil {
		return err
	}
	for _, d := range cfg.Deprecations {
		logger.Warn("deprecated flag", "detail", d)
	}
	if cfg.Proc == nil {
		cfg.Proc = collectors.ProcDir(cfg.ProcPath)
	}
	if cfg.HostNetSource == nil {
		cfg.HostNetSource = hostnet.KernelSource{ProcPath: cfg.ProcPath, PinDirs: hostnet.PinDirs}
	}
	// client-go logs through klog: its lines must follow --log.format like
	// the agent's own, and its retries while the API server is away must
	// not flood the log.
	kube.RouteKlog(logger, 30*time.Second)
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = time.Second
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	steadyLimit := startupMemoryLimit()

	set := collectors.NewSet(logger, cfg.Collectors)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector(collectors.Namespace),
		promcollectors.NewGoCollector(),
		promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}),
	)
	if cfg.MaxConnsPerClient > 0 {
		var refused atomic.Uint64
		for i, l := range listeners {
			listeners[i] = capPerClient(l, cfg.MaxConnsPerClient, &refused, logger)
		}
		reg.MustRegister(refusedCollector{&refused})
	}
	// The collectors' Set is not in reg: the scrape handler gathers it
	// per scrape, with the scraper's deadline.

	server := &http.Server{
		Handler: newMux(cfg, reg, set, logger),
		// Every phase of a connection has a bound, so a client that
		// sends slowly (slowloris), reads slowly or idles holds a
		// goroutine and an fd for seconds, not for ever.
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	go func() {
		configPath := ""
		if cfg.Web.WebConfigFile != nil {
			configPath = *cfg.Web.WebConfigFile
		}
		serveErr <- serve(listeners, server, configPath, logger)
	}()
	logger.Info("listening", "addresses", *cfg.Web.WebListenAddresses, "telemetry_path", cfg.TelemetryPath)

	// Collectors start while the server already answers /healthz, so a
	// slow BPF load does not make the kubelet kill the pod.
	startDone := make(chan struct{})
	go func() {
		defer close(startDone)
		deps := collectors.Deps{Logger: logger, Clock: collectors.SystemClock{}, Proc: cfg.Proc, SysPath: cfg.SysPath, BTF: &loader.KernelBTF{},
			DropReasons: &dropreason.Cache{}}
		hostOpts := hostnet.Options{Logger: logger.With("component", "hostnet"), Source: cfg.HostNetSource, Interval: cfg.HostNetInterval}
		if w, err := hostnet.NewWatcher(logger.With("component", "linkwatch"), hostnet.WatcherOptions{}); err != nil {
			logger.Warn("no netlink link view; collectors that need it are down", "err", err)
		} else if err := w.Start(ctx); err != nil {
			logger.Warn("no netlink link view; collectors that need it are down", "err", err)
		} else {
			hostOpts.Links = w
		}
		view, err := hostnet.New(hostOpts)
		if err != nil {
			logger.Warn("no host network view; collectors that need it are down", "err", err)
			deps.Pods = cluster.None{}
		} else {
			deps.Pods = view
			deps.Counters = view
			if hostOpts.Links != nil {
				deps.Net = view
			}
			if cfg.PodIndex != nil {
				view.SetPods(cfg.PodIndex)
			}
		}
		if cfg.Kube != nil {
			deps.NodeName = cfg.Kube.NodeName
			kcfg := *cfg.Kube
			if view != nil {
				kcfg.Changed = view.Changed
				kcfg.Attributed = func() int { return view.Snapshot().Attributed() }
			}
			// Start waits a moment for the API server at most: one that
			// does not answer yet is joined in the background, and the
			// resolver answers (with nothing) meanwhile, so the view
			// takes it now and names pods from the first sync on.
			switch r, err := kube.Start(ctx, kcfg, logger.With("component", "kube")); {
			case errors.Is(err, kube.ErrNoCluster):
				logger.Info("no cluster: running standalone, without pod labels or peer nodes")
			case err != nil:
				logger.Warn("cluster misconfigured: running standalone, without pod labels or peer nodes", "err", err)
			default:
				logger.Info("watching the cluster", "node", cfg.Kube.NodeName)
				if view != nil {
					view.SetPods(r)
				}
				// The first list of the cluster's nodes is garbage
				// once slimmed (a page of kubelet-sized Node objects
				// at a time, but pages of a 5,000-node cluster add up
				// to 100 MB decoded): hand it back to the OS at once
				// rather than over the scavenger's minutes.
				go func() {
					select {
					case <-r.Joined():
						debug.FreeOSMemory()
						ReleaseStartupPages(logger)
					case <-ctx.Done():
					}
				}()
				if err := reg.Register(r); err != nil {
					logger.Warn("cluster metrics not registered", "err", err)
				}
			}
		}
		if view != nil {
			// One full read before the collectors start, so their first
			// scrape names what is already there.
			view.Start(ctx)
		}
		set.Start(ctx, deps)
		// Starting parses the kernel's BTF (CO-RE relocations): MiB
		// that are garbage once the programs are loaded. Drop the cache
		// and hand the memory back to the OS, so the agent's RSS is its
		// steady state, not its peak.
		deps.BTF.Release()
		debug.FreeOSMemory()
		ReleaseStartupPages(logger)
		// From here on the heap is small and steady (a few MiB live,
		// ~0.4 MiB of garbage per scrape): a lower GOGC keeps RSS close
		// to it at a cost of a GC every few scrapes, not measurable in
		// CPU. Start-up keeps Go's default, so BTF parsing is not slowed.
		// An explicit GOGC wins.
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(steadyGCPercent)
		}
		debug.SetMemoryLimit(steadyLimit)
		logger.Info("collectors initialised", "ready", true)
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve: %w", err)
		}
	}

	logger.Info("shutting down")
	cancel()
	shutdownCtx, stop := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer stop()
	if err := server.Shutdown(shutdownCtx); err != nil {
		server.Close()
	}
	<-startDone
	if err := set.Close(); err != nil {
		logger.Warn("closing collectors", "err", err)
	}
	return runErr
}

// listen opens every address before anything else starts, so an address in
// use stops the agent at once with a message naming it.
func listen(addrs []string) ([]net.Listener, error) {
	var ls []net.Listener
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return nil, fmt.Errorf("listen on %s: %w", a, unwrapOpError(err))
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// unwrapOpError drops net.OpError's repetition of the address.
func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
