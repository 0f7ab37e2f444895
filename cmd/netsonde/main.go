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
	app := kingpin.New("netsonde", "Kubernetes network health agent: drops, retransmits, fragmentation, conntrack, MTUs and etcd fsync latency on /metrics.")
	app.Version(version.Print("netsonde"))
	app.HelpFlag.Short('h')
	app.UsageWriter(os.Stdout)

	webFlags := kingpinflag.AddFlags(app, defaultAddress)
	telemetryPath := app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
	maxRequests := app.Flag("web.max-requests", "Maximum number of parallel scrape requests. 0 disables the limit.").Default("40").Int()
	procPath := app.Flag("path.procfs", "procfs mountpoint.").Default("/proc").String()
	sysPath := app.Flag("path.sysfs", "sysfs mountpoint.").Default("/sys").String()
	kubeconfig := app.Flag("kubeconfig", "kubeconfig file; default: in-cluster config when running in a pod, else no cluster (standalone).").String()
	nodeName := app.Flag("node-name", "This node's name in the cluster (default: $NODE_NAME, set by the DaemonSet from the downward API).").Envar("NODE_NAME").String()
	maxPods := app.Flag("kube.max-pods", "Distinct pods named in labels at most; pods beyond get pod=\"_overflow\".").Default("1000").Int()
	disableDefaults := app.Flag("collector.disable-defaults", "Turn off every collector that is on by default; enable them one by one with --collector.NAME.").Default("false").Bool()

	type choice struct {
		spec     collectors.Spec
		enabled  *bool
		explicit bool
		factory  collectors.Factory
	}
	var choices []*choice
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
		choices = append(choices, c)
	}

	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "netsonde: %v (see --help)\n", err)
		return 2
	}
	logger := promslog.New(logConfig)
	if *kubeconfig != "" {
		if err := kube.CheckKubeconfig(*kubeconfig); err != nil {
			fmt.Fprintf(os.Stderr, "netsonde: --kubeconfig: %v\n", err)
			return 2
		}
	}

	cfg := agent.Config{
		Web:           webFlags,
		TelemetryPath: *telemetryPath,
		MaxRequests:   *maxRequests,
		ProcPath:      *procPath,
		SysPath:       *sysPath,
		Kube:          &kube.Config{Kubeconfig: *kubeconfig, NodeName: *nodeName, ProcPath: *procPath, MaxPods: *maxPods},
	}
	var names []string
	for _, c := range choices {
		on := *c.enabled
		if *disableDefaults && !c.explicit {
			on = false
		}
		if on {
			cfg.Collectors = append(cfg.Collectors, collectors.Enabled{Name: c.spec.Name, Help: c.spec.Help, Factory: c.factory})
			names = append(names, c.spec.Name)
		}
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
