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
	"github.com/netsonde/netsonde/agent/kube"
	"github.com/netsonde/netsonde/collectors"
)

// defaultAddress: 9100-9999 of Prometheus' default port allocations list
// is fully taken; 10333 was not on the list when we chose it (see README).
const defaultAddress = ":10333"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// doctor is dispatched before the agent's flags are parsed: it shares
	// the collector flags but not the web server's, and the agent's command
	// line (no subcommand) stays exactly what DaemonSets already run.
	if len(args) > 0 && args[0] == "doctor" {
		return runDoctor(args[1:], os.Stdout, os.Stderr)
	}
	app := kingpin.New("netsonde", "Kubernetes network health agent: drops, retransmits, fragmentation, conntrack, MTUs and etcd fsync latency on /metrics. `netsonde doctor --help`: the same measurements as a diagnosis, in the terminal.")
	app.Version(version.Print("netsonde"))
	app.HelpFlag.Short('h')
	app.UsageWriter(os.Stdout)

	webFlags := kingpinflag.AddFlags(app, defaultAddress)
	telemetryPath := app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
	maxRequests := app.Flag("web.max-requests", "Maximum number of parallel scrape requests; a scrape over it waits up to half its timeout for a slot, then gets 503. 0 disables the limit.").Default("40").Int()
	enablePprof := app.Flag("web.enable-pprof", "Serve Go's profiles (heap, goroutines, CPU) under /debug/pprof/, behind the same TLS and auth as /metrics.").Default("false").Bool()
	shared := addSharedFlags(app)

	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "netsonde: %v (see --help)\n", err)
		return 2
	}
	logger := promslog.New(logConfig)
	cfg, names, err := shared.config()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netsonde: %v\n", err)
		return 2
	}
	cfg.Web = webFlags
	cfg.TelemetryPath = *telemetryPath
	cfg.MaxRequests = *maxRequests
	cfg.EnablePprof = *enablePprof
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

// sharedFlags are the flags of the agent that doctor has too: which
// collectors run and with what settings, where procfs and sysfs are, which
// cluster to name pods from. One definition, so `netsonde doctor` accepts
// exactly the --collector.X / --no-collector.X the DaemonSet is given.
type sharedFlags struct {
	procPath, sysPath, kubeconfig, nodeName *string
	maxPods                                 *int
	disableDefaults                         *bool
	choices                                 []*choice
}

type choice struct {
	spec     collectors.Spec
	enabled  *bool
	explicit bool
	factory  collectors.Factory
}

func addSharedFlags(app *kingpin.Application) *sharedFlags {
	f := &sharedFlags{}
	f.procPath = app.Flag("path.procfs", "procfs mountpoint.").Default("/proc").String()
	f.sysPath = app.Flag("path.sysfs", "sysfs mountpoint.").Default("/sys").String()
	f.kubeconfig = app.Flag("kubeconfig", "kubeconfig file; default: in-cluster config when running in a pod, else no cluster (standalone).").String()
	f.nodeName = app.Flag("node-name", "This node's name in the cluster (default: $NODE_NAME, set by the DaemonSet from the downward API).").Envar("NODE_NAME").String()
	f.maxPods = app.Flag("kube.max-pods", "Distinct pods named in labels at most; pods beyond get pod=\"_overflow\".").Default("1000").Int()
	f.disableDefaults = app.Flag("collector.disable-defaults", "Turn off every collector that is on by default; enable them one by one with --collector.NAME.").Default("false").Bool()
	for _, s := range agent.Collectors() {
		c := &choice{spec: s}
		state := "disabled"
		if s.DefaultEnabled {
			state = "enabled"
		}
		c.enabled = app.Flag("collector."+s.Name, fmt.Sprintf("%s (default: %s)", s.Help, state)).
			Default(fmt.Sprint(s.DefaultEnabled)).
			Action(func(*kingpin.ParseContext) error { c.explicit = true; return nil }).
			Bool()
		c.factory = s.Setup(app)
		f.choices = append(f.choices, c)
	}
	return f
}

// config turns the parsed flags into the agent's configuration (without
// its web part) and the names of the enabled collectors.
func (f *sharedFlags) config() (agent.Config, []string, error) {
	if *f.kubeconfig != "" {
		if err := kube.CheckKubeconfig(*f.kubeconfig); err != nil {
			return agent.Config{}, nil, fmt.Errorf("--kubeconfig: %w", err)
		}
	}
	cfg := agent.Config{
		ProcPath: *f.procPath,
		SysPath:  *f.sysPath,
		Kube:     &kube.Config{Kubeconfig: *f.kubeconfig, NodeName: *f.nodeName, ProcPath: *f.procPath, MaxPods: *f.maxPods},
	}
	var names []string
	for _, c := range f.choices {
		on := *c.enabled
		if *f.disableDefaults && !c.explicit {
			on = false
		}
		if on {
			cfg.Collectors = append(cfg.Collectors, collectors.Enabled{Name: c.spec.Name, Help: c.spec.Help, Factory: c.factory})
			names = append(names, c.spec.Name)
		}
	}
	return cfg, names, nil
}
