package doctor

import (
	"fmt"
)

// downWhy explains the reasons collectors report, in words an operator can
// act on.
var downWhy = map[string]string{
	"no_btf":        "the kernel has no BTF (/sys/kernel/btf/vmlinux): build it with CONFIG_DEBUG_INFO_BTF, or use a newer kernel",
	"not_permitted": "a capability is missing (BPF, PERFMON, NET_ADMIN, SYS_ADMIN) or lockdown refuses it",
	"not_supported": "the kernel is too old for this program or map type",
	"memlock":       "RLIMIT_MEMLOCK is too low for the BPF maps (kernels before 5.11)",
	"no_netlink":    "no netlink view of the interfaces",
	"netns":         "cannot enter or read network namespaces",
	"no_path":       "the path to probe does not exist on this node",
	"bad_flag":      "a flag of the collector is wrong",
	"attach_failed": "an eBPF program could not attach (the tracepoint is missing, or tracefs cannot be mounted)",
}

// checkCollectors reports collectors that are down. Its alert counts down
// collectors across the fleet (its threshold is on that count), so on one
// node the test is the gauge itself, with the alert's exclusion: no_path is
// the fsync probe on a node without etcd, expected on every worker.
func checkCollectors(o Observation, r Rules) []Finding {
	var out []Finding
	for _, s := range o.After.Samples("netsonde_collector_up", nil) {
		name, reason := s.Label("collector"), s.Label("reason")
		if s.Value != 0 || reason == "no_path" {
			continue
		}
		f := r.finding("collector-down", alertCollectorDown, name)
		f.Summary = fmt.Sprintf("collector %s is down on this node (%s)", name, reason)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s = 0", SeriesString("netsonde_collector_up", s.Labels)))
		f.Why = advice["collector-down"].Why
		if w := downWhy[reason]; w != "" {
			f.Why = w + "; " + advice["collector-down"].Why
		}
		f.Next = fmt.Sprintf("the agent's log and landing page say why; --no-collector.%s where it does not apply", name)
		out = append(out, f)
	}
	return out
}
