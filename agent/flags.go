package agent

import (
	"fmt"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/netsonde/netsonde/agent/kube"
	"github.com/netsonde/netsonde/collectors"
)

// Flags are the agent's own flags, which `netsonde doctor` has too: which
// collectors run and with what settings, where procfs and sysfs are, which
// cluster to name pods from. One definition, so `netsonde doctor` accepts
// exactly the --collector.X / --no-collector.X the DaemonSet is given.
type Flags struct {
	procPath, sysPath, kubeconfig, nodeName *string
	maxPods                                 *int
	disableDefaults                         *bool
	hostnetInterval                         *time.Duration
	// Old spellings of --hostnet.refresh-interval: the collectors whose
	// namespace reads moved into the host network view had their own.
	oldNamesTTL, oldPeerInterval *time.Duration
	choices                      []*choice
}

type choice struct {
	spec     collectors.Spec
	enabled  *bool
	explicit bool
	factory  collectors.Factory
}

// AddFlags registers the flags on app: paths, the cluster, and each
// collector's --collector.NAME switch and own flags.
func AddFlags(app *kingpin.Application) *Flags {
	f := &Flags{}
	f.procPath = app.Flag("path.procfs", "procfs mountpoint.").Default("/proc").String()
	f.sysPath = app.Flag("path.sysfs", "sysfs mountpoint.").Default("/sys").String()
	f.kubeconfig = app.Flag("kubeconfig", "kubeconfig file; default: in-cluster config when running in a pod, else no cluster (standalone).").String()
	f.nodeName = app.Flag("node-name", "This node's name in the cluster (default: $NODE_NAME, set by the DaemonSet from the downward API).").Envar("NODE_NAME").String()
	f.maxPods = app.Flag("kube.max-pods", "Distinct pods named in labels at most; pods beyond get pod=\"_overflow\".").Default("1000").Int()
	f.hostnetInterval = app.Flag("hostnet.refresh-interval", "How often the host network view reads every network namespace again (interface names, addresses, the far ends of pods' veths); new namespaces and link changes are read as they come.").
		Default("10s").Duration()
	f.oldNamesTTL = app.Flag("drops.names-ttl", "Deprecated: use --hostnet.refresh-interval.").Hidden().Duration()
	f.oldPeerInterval = app.Flag("mtucheck.peer-interval", "Deprecated: use --hostnet.refresh-interval.").Hidden().Duration()
	f.disableDefaults = app.Flag("collector.disable-defaults", "Turn off every collector that is on by default; enable them one by one with --collector.NAME.").Default("false").Bool()
	for _, s := range Collectors() {
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

// splitFrom names, for a collector split out of another, the one it was
// part of. For one release, turning the old one off explicitly
// (--no-collector.OLD) turns the new one off too unless it is named itself
// (--collector.NEW or --no-collector.NEW), with a deprecation warning: a
// DaemonSet that had --no-collector.mtucheck ran no path-MTU probes, and
// must not start sending them on upgrade.
var splitFrom = map[string]string{
	"pmtu": "mtucheck", // the path-MTU probe was part of mtucheck up to 0.1.0
}

// Config turns the parsed flags into the agent's configuration (without
// its web part) and the names of the enabled collectors.
func (f *Flags) Config() (Config, []string, error) {
	if *f.kubeconfig != "" {
		if err := kube.CheckKubeconfig(*f.kubeconfig); err != nil {
			return Config{}, nil, fmt.Errorf("--kubeconfig: %w", err)
		}
	}
	if *f.hostnetInterval <= 0 {
		return Config{}, nil, fmt.Errorf("--hostnet.refresh-interval must be positive, got %v", *f.hostnetInterval)
	}
	cfg := Config{
		ProcPath:        *f.procPath,
		SysPath:         *f.sysPath,
		HostNetInterval: *f.hostnetInterval,
		Kube:            &kube.Config{Kubeconfig: *f.kubeconfig, NodeName: *f.nodeName, MaxPods: *f.maxPods},
	}
	// An old spelling still sets the interval (the shortest given wins,
	// as each asked for reads at least that often) for one release.
	for _, old := range []struct {
		name string
		v    time.Duration
	}{{"--drops.names-ttl", *f.oldNamesTTL}, {"--mtucheck.peer-interval", *f.oldPeerInterval}} {
		if old.v == 0 {
			continue
		}
		if old.v < 0 {
			return Config{}, nil, fmt.Errorf("%s must be positive, got %v", old.name, old.v)
		}
		cfg.HostNetInterval = min(cfg.HostNetInterval, old.v)
		cfg.Deprecations = append(cfg.Deprecations, fmt.Sprintf("%s is deprecated and will be removed in the next release: use --hostnet.refresh-interval (now %v)", old.name, cfg.HostNetInterval))
	}
	byName := map[string]*choice{}
	for _, c := range f.choices {
		byName[c.spec.Name] = c
	}
	var names []string
	for _, c := range f.choices {
		on := *c.enabled
		if *f.disableDefaults && !c.explicit {
			on = false
		}
		if from, ok := splitFrom[c.spec.Name]; ok && on && !c.explicit {
			if old := byName[from]; old != nil && old.explicit && !*old.enabled {
				on = false
				cfg.Deprecations = append(cfg.Deprecations, fmt.Sprintf(
					"--no-collector.%[1]s turns the %[2]s collector off too, as when %[2]s was part of %[1]s; in the next release it will not: add --no-collector.%[2]s to keep it off, or --collector.%[2]s to turn it on",
					from, c.spec.Name))
			}
		}
		if on {
			cfg.Collectors = append(cfg.Collectors, collectors.Enabled{Name: c.spec.Name, Help: c.spec.Help, Factory: c.factory})
			names = append(names, c.spec.Name)
		}
	}
	return cfg, names, nil
}
