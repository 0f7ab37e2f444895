// Package tcpconnect exports the outcome of every TCP connection a pod (or
// the host) opens: established, refused, timed out or failed otherwise,
// how long the handshake took, resets sent and received, and the smoothed
// RTT of each connection as it closes. Everything is counted in the
// kernel per network namespace; a scrape reads one map entry per pod.
package tcpconnect

import (
	"context"
	"fmt"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/bpf/loader"
	bpftc "github.com/netsonde/netsonde/bpf/tcpconnect"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/netnsnames"
)

// Spec is the collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "tcpconnect",
	Help:           "TCP connect outcomes, handshake duration, resets and smoothed RTT per pod (eBPF on sock:inet_sock_set_state, tcp:tcp_send_reset, tcp:tcp_receive_reset).",
	DefaultEnabled: true,
	Setup: func(app *kingpin.Application) collectors.Factory {
		attach := app.Flag("tcpconnect.attach", "How to attach: auto (tp_btf, then raw_tp), tp_btf or raw_tp.").
			Default("auto").Enum("auto", loader.HookTPBTF, loader.HookRawTP)
		scope := app.Flag("tcpconnect.netns", "Count connections of every network namespace on the node (all: pods too, labelled by pod when the agent knows the cluster) or of the agent's own only (own).").
			Default("all").Enum("all", "own")
		return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
			return New(deps, *attach, *scope == "own")
		}
	},
}

// New loads the programs and returns the collector; attach is auto or a
// hook; ownOnly keeps the agent's own namespace only.
func New(deps collectors.Deps, attach string, ownOnly bool) (collectors.Collector, error) {
	own, err := netnsnames.Inode("/proc/thread-self/ns/net")
	if err != nil {
		return nil, collectors.Down("netns", err)
	}
	var opts bpftc.Options
	if attach != "" && attach != "auto" {
		opts.Hooks = []string{attach}
	}
	c, err := bpftc.Load(opts)
	if err != nil {
		deps.Logger.Warn("tcpconnect: no hook attached", "err", err)
		return nil, collectors.BPFLoadDown(err, "attach_failed")
	}
	deps.Logger.Info("tcp connect counter attached", "hooks", c.Hooks())
	return &collector{deps: deps, c: c, own: uint32(own), ownOnly: ownOnly}, nil
}

var (
	connectsDesc = prometheus.NewDesc(collectors.Namespace+"_tcp_connects_total",
		"TCP connections opened (active opens) by outcome: established (handshake completed), refused (RST in SYN_SENT), timeout (SYN_SENT ended without any answer: the kernel gave up or the application closed), error (anything else, e.g. ICMP unreachable).",
		[]string{"namespace", "pod", "result"}, nil)
	durationDesc = prometheus.NewDesc(collectors.Namespace+"_tcp_connect_duration_seconds",
		"Time from SYN sent to ESTABLISHED of active opens; the 1 s and 3 s edges are the SYN retransmit steps.",
		[]string{"namespace", "pod"}, nil)
	resetsDesc = prometheus.NewDesc(collectors.Namespace+"_tcp_resets_total",
		"TCP resets sent and received.",
		[]string{"namespace", "pod", "direction"}, nil)
	srttDesc = prometheus.NewDesc(collectors.Namespace+"_tcp_srtt_seconds",
		"Smoothed RTT of each TCP connection, sampled once when it closes.",
		[]string{"namespace", "pod"}, nil)
	inflightDesc = prometheus.NewDesc(collectors.Namespace+"_tcp_connects_in_flight",
		"Active opens in SYN_SENT now, as the kernel map holds them (16384 at most on the node).",
		[]string{"namespace", "pod"}, nil)
)

var results = [4]string{"established", "refused", "timeout", "error"}

type collector struct {
	deps    collectors.Deps
	c       *bpftc.Counter
	own     uint32
	ownOnly bool
}

type podKey struct{ namespace, pod string }

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	collectors.BPFHooks(ch, c.c.Hooks())
	all, err := c.c.Read()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	// Namespaces of one pod (none today, but the host's several unnamed
	// ones) are summed: a label set is sent once.
	sums := map[podKey]*bpftc.Stats{}
	for ns, s := range all {
		k, ok := c.pod(ns)
		if !ok {
			continue
		}
		if sums[k] == nil {
			sums[k] = &bpftc.Stats{}
		}
		bpftc.Add(sums[k], &s)
	}
	for k, s := range sums {
		for i, r := range results {
			ch <- prometheus.MustNewConstMetric(connectsDesc, prometheus.CounterValue, float64(s.Connects[i]), k.namespace, k.pod, r)
		}
		ch <- prometheus.MustNewConstMetric(resetsDesc, prometheus.CounterValue, float64(s.Resets[0]), k.namespace, k.pod, "sent")
		ch <- prometheus.MustNewConstMetric(resetsDesc, prometheus.CounterValue, float64(s.Resets[1]), k.namespace, k.pod, "received")
		n, b := cumulative(bpftc.DurationEdges, s.DurBuckets[:])
		ch <- prometheus.MustNewConstHistogram(durationDesc, n, float64(s.DurSumNs)/1e9, b, k.namespace, k.pod)
		n, b = cumulative(bpftc.SRTTEdges, s.SrttBuckets[:])
		ch <- prometheus.MustNewConstHistogram(srttDesc, n, float64(s.SrttSumUs)/1e6, b, k.namespace, k.pod)
	}
	inflight, err := c.c.InFlight()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	gauge := map[podKey]int{}
	for ns, n := range inflight {
		if k, ok := c.pod(ns); ok {
			gauge[k] += n
		}
	}
	for k, n := range gauge {
		ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(n), k.namespace, k.pod)
	}
	return nil
}

// cumulative turns the kernel's per-bucket counts (the last one +Inf) into
// Prometheus' cumulative buckets and the total count.
func cumulative(edges []float64, counts []uint64) (uint64, map[float64]uint64) {
	if len(counts) != len(edges)+1 {
		panic(fmt.Sprintf("tcpconnect: %d buckets for %d edges", len(counts), len(edges)))
	}
	b := make(map[float64]uint64, len(edges))
	var n uint64
	for i, e := range edges {
		n += counts[i]
		b[e] = n
	}
	return n + counts[len(edges)], b
}

// pod names the pod of a namespace (the zero podKey for the host and
// namespaces of no known pod), and says whether it is counted at all.
func (c *collector) pod(ns uint32) (podKey, bool) {
	if ns == c.own {
		return podKey{}, true
	}
	if c.ownOnly {
		return podKey{}, false
	}
	pod, _ := c.deps.Pods.ByNetns(uint64(ns))
	return podKey{pod.Namespace, pod.Name}, true
}

func (c *collector) Close() error { return c.c.Close() }
