// Command netsonde is the node agent: flags and wiring only.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/netsonde/netsonde/agent"
)

// defaultAddress: 9100-9999 of Prometheus' default port allocations list
// is fully taken; 10333 was not on the list when we chose it (see README).
const defaultAddress = ":10333"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// Subcommands are dispatched before the agent's flags are parsed:
	// doctor shares the collector flags but not the web server's, cleanup
	// neither, and the agent's command line (no subcommand) stays exactly
	// what DaemonSets already run.
	if len(args) > 0 {
		switch args[0] {
		case "doctor":
			return runDoctor(args[1:], os.Stdout, os.Stderr)
		case "cleanup":
			return runCleanup(args[1:], os.Stdout, os.Stderr)
		case "capture":
			return runCapture(args[1:], os.Stdout, os.Stderr)
		}
	}
	app := kingpin.New("netsonde", "Kubernetes network health agent: drops, retransmits, fragmentation, conntrack, MTUs and etcd fsync latency on /metrics. `netsonde doctor --help`: the same measurements as a diagnosis, in the terminal. `netsonde cleanup --help`: remove what killed agents left on the node.")
	app.Version(version.Print("netsonde"))
	app.HelpFlag.Short('h')
	app.UsageWriter(os.Stdout)

	webFlags := kingpinflag.AddFlags(app, defaultAddress)
	telemetryPath := app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
	maxRequests := app.Flag("web.max-requests", "Maximum number of parallel scrape requests; a scrape over it waits up to half its timeout for a slot, then gets 503. 0 disables the limit.").Default("40").Int()
	maxConns := app.Flag("web.max-connections-per-client", "Maximum number of connections one client address may have open; more are closed as soon as accepted (netsonde_http_connections_refused_total). 0 disables the limit.").Default("32").Int()
	enablePprof := app.Flag("web.enable-pprof", "Serve Go's profiles (heap, goroutines, CPU) under /debug/pprof/, behind the same TLS and auth as /metrics.").Default("false").Bool()
	captureRate := app.Flag("capture.max-rate", "Dropped packets a second one `netsonde capture` may copy out of the kernel (a rate limit in the kernel; what it refuses is counted and reported when the capture ends).").Default("1000").Int()
	captureAllowPayload := app.Flag("capture.allow-payload", "Let `netsonde capture --snaplen` keep more than the packets' headers (128 bytes), up to 1024: payloads may hold what the agent's HTTP clients should not read.").Default("false").Bool()
	shared := agent.AddFlags(app)

	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "netsonde: %v (see --help)\n", err)
		return 2
	}
	logger := promslog.New(logConfig)
	// Before anything else maps the binary: from here on a fault maps the
	// page start-up needs, not the neighbours the page cache holds (see
	// ReleaseStartupPages); it is done again once start-up is over.
	agent.ReleaseStartupPages(logger)
	cfg, names, err := shared.Config()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netsonde: %v\n", err)
		return 2
	}
	cfg.Web = webFlags
	cfg.TelemetryPath = *telemetryPath
	cfg.MaxRequests = *maxRequests
	cfg.MaxConnsPerClient = *maxConns
	cfg.EnablePprof = *enablePprof
	cfg.CaptureMaxRate = *captureRate
	cfg.CaptureAllowPayload = *captureAllowPayload
	switch limit, err := agent.SetMemoryLimit("/sys/fs/cgroup"); {
	case err != nil:
		logger.Warn("memory limit not applied to the Go runtime", "err", err)
	case limit > 0:
		logger.Info("Go runtime memory limit set from the container's", "bytes", limit)
	}
	logger.Info("starting netsonde", "version", version.Info(), "build", version.BuildContext(), "collectors", names)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg, logger); err != nil {
		fmt.Fprintf(os.Stderr, "netsonde: %v\n", err)
		return 1
	}
	return 0
}
