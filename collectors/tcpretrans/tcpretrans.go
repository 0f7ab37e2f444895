// Package tcpretrans exports TCP retransmits counted in the kernel by the
// socket's state: SYN_SENT retransmits are connection attempts that get no
// answer, ESTABLISHED ones are lost data.
package tcpretrans

import (
	"context"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/bpf/loader"
	bpftcp "github.com/netsonde/netsonde/bpf/tcpretrans"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/decode"
	"github.com/netsonde/netsonde/internal/hostview"
)

// Spec is the retransmit collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "tcpretrans",
	Help:           "TCP retransmits by TCP state, family and pod (eBPF on tcp:tcp_retransmit_skb and tcp_retransmit_synack).",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_tcp_retransmits"},
	// State × family per pod namespace and the host's.
	Budget: func(_, p int) int { return 2 * 12 * (p + 1) },
	Setup: func(app *kingpin.Application) collectors.Factory {
		group := app.Flag("tcpretrans.tracepoint-group", "Tracepoint group of the classic retransmit tracepoints (for testing a missing hook, with --tcpretrans.attach=tracepoint).").
			Default("tcp").Hidden().String()
		attach := app.Flag("tcpretrans.attach", "How to attach: auto (tp_btf, then raw_tp, then the classic tracepoint), tp_btf, raw_tp, or tracepoint.").
			Default("auto").Enum("auto", loader.HookTPBTF, loader.HookRawTP, loader.HookTracepoint)
		scope := app.Flag("tcpretrans.netns", "Count retransmits of every network namespace on the node (all: pods too, labelled by pod when the agent knows the cluster) or of the agent's own only (own).").
			Default("all").Enum("all", "own")
		return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
			own, err := hostview.OwnCookie()
			if err != nil {
				return nil, collectors.Down("netns", err)
			}
			opts := bpftcp.Options{Group: *group, BTF: deps.BTF}
			if *attach != "auto" {
				opts.Hooks = []string{*attach}
			}
			c, err := bpftcp.Load(opts)
			if err != nil {
				return nil, collectors.BPFLoadDown(err, "attach_failed")
			}
			deps.Logger.Info("retransmit counter attached", "hooks", c.Hooks())
			return &collector{deps: deps, c: c, own: own, ownOnly: *scope == "own"}, nil
		}
	},
}

var retransDesc = prometheus.NewDesc(collectors.Namespace+"_tcp_retransmits_total",
	"TCP segments retransmitted (as the kernel's RetransSegs counts them) by the socket's TCP state at the retransmit; SYN_SENT: connection attempts unanswered, SYN_RECV: SYN-ACKs resent.",
	[]string{"state", "family", "namespace", "pod"}, nil)

// counter is what Collect uses of the loaded programs (*bpftcp.Probe),
// so that a test can serve fixed counts.
type counter interface {
	Hooks() map[string]string
	Read() (map[bpftcp.Key]uint64, error)
	Full() (uint64, error)
	Close() error
}

type collector struct {
	deps    collectors.Deps
	c       counter
	own     uint64
	ownOnly bool
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	collectors.BPFHooks(ch, c.c.Hooks())
	counts, err := c.c.Read()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	type labels struct{ state, family, namespace, pod string }
	sums := map[labels]uint64{}
	for k, v := range counts {
		if c.ownOnly && k.Netns != c.own {
			continue
		}
		l := labels{state: decode.TCPStateName(k.State), family: decode.FamilyName(k.Family)}
		if k.Netns != c.own {
			pod, _ := c.deps.Pods.ByNetns(k.Netns)
			l.namespace, l.pod = pod.Namespace, pod.Name
		}
		sums[l] += v
	}
	for l, v := range sums {
		ch <- prometheus.MustNewConstMetric(retransDesc, prometheus.CounterValue, float64(v), l.state, l.family, l.namespace, l.pod)
	}
	full, err := c.c.Full()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	collectors.BPFMapFull(ch, "tcpretrans", full)
	return nil
}

func (c *collector) Close() error { return c.c.Close() }
