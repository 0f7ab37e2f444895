// Package tcpconnect exports the outcome of every TCP connection a pod (or
// the host) opens: established, refused, timed out, out of local ports
// (no_port) or failed otherwise, how long the handshake took, resets sent
// and received, and the smoothed RTT of each connection as it closes. Everything is counted in the
// kernel per network namespace; a scrape reads one map entry per pod.
package tcpconnect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/bpf/loader"
	bpftc "github.com/netsonde/netsonde/bpf/tcpconnect"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/hostview"
)

// Spec is the collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "tcpconnect",
	Help:           "TCP connect outcomes, handshake duration, resets and smoothed RTT per pod (eBPF on sock:inet_sock_set_state, sock:inet_sk_error_report, tcp:tcp_send_reset, tcp:tcp_receive_reset).",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_tcp_"},
	// Per pod namespace and the host's: 5 results, 2 reset directions,
	// two histograms (connect duration, srtt at close) of at most 16
	// buckets each with sum and count; the in-flight gauge.
	Budget: func(_, p int) int { return (5+2+2*(16+2))*(p+1) + 16 },
	Setup: func(app *kingpin.Application) collectors.Factory {
		attach := app.Flag("tcpconnect.attach", "How to attach: auto (tp_btf, then raw_tp), tp_btf or raw_tp.").
			Default("auto").Enum("auto", loader.HookTPBTF, loader.HookRawTP)
		scope := app.Flag("tcpconnect.netns", "Count connections of every network namespace on the node (all: pods too, labelled by pod when the agent knows the cluster) or of the agent's own only (own).").
			Default("all").Enum("all", "own")
		forget := app.Flag("tcpconnect.forget-after", "Forget the counters of a network namespace this long after it disappeared (its pod is gone), so its series go and its map slot is free again.").
			Default("2m").Duration()
		return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
			return New(deps, Options{Attach: *attach, OwnOnly: *scope == "own", ForgetAfter: *forget})
		}
	},
}

// Options of the collector.
type Options struct {
	// Attach is auto or a hook (tp_btf, raw_tp).
	Attach string
	// OwnOnly counts the agent's own namespace only.
	OwnOnly bool
	// ForgetAfter is how long a vanished namespace's counters are kept.
	ForgetAfter time.Duration
}

// New loads the programs and returns the collector.
func New(deps collectors.Deps, o Options) (collectors.Collector, error) {
	if deps.Net == nil {
		return nil, collectors.Down("no_netlink", errors.New("the agent has no view of the host's network namespaces"))
	}
	opts := bpftc.Options{BTF: deps.BTF}
	if o.Attach != "" && o.Attach != "auto" {
		opts.Hooks = []string{o.Attach}
	}
	c, err := bpftc.Load(opts)
	if err != nil {
		deps.Logger.Warn("tcpconnect: no hook attached", "err", err)
		return nil, collectors.BPFLoadDown(err, "attach_failed")
	}
	deps.Logger.Info("tcp connect counter attached", "hooks", c.Hooks())
	return &collector{deps: deps, c: c, own: deps.Net.Snapshot().Own(), ownOnly: o.OwnOnly, forgetAfter: o.ForgetAfter,
		retired: map[podKey]*bpftc.Stats{}}, nil
}

var (
	connectsDesc = prometheus.NewDesc(collectors.Namespace+"_tcp_connects_total",
		"TCP connections opened (active opens) by outcome: established (handshake completed), refused (RST in SYN_SENT), timeout (SYN_SENT ended without any answer: the kernel gave up or the application closed), error (anything else, e.g. ICMP unreachable), no_port (no local port was free: connect failed with EADDRNOTAVAIL before any SYN was sent; ephemeral ports exhausted).",
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

var results = [5]string{"established", "refused", "timeout", "error", "no_port"}

// counter is what Collect uses of the loaded programs (*bpftc.Probe),
// so that a test can serve fixed counts.
type counter interface {
	Hooks() map[string]string
	Read() (map[uint64]bpftc.Stats, error)
	InFlight() (map[uint64]int, error)
	Full() (map[string]uint64, error)
	Forget(netns []uint64)
	Close() error
}

type collector struct {
	deps        collectors.Deps
	c           counter
	own         uint64
	ownOnly     bool
	forgetAfter time.Duration

	mu sync.Mutex
	// retired holds the counts of forgotten namespaces whose labels other
	// namespaces still have (standalone, every foreign namespace is the
	// host's), so that no counter goes down when one of them is forgotten.
	retired map[podKey]*bpftc.Stats
}

type podKey struct{ namespace, pod string }

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	collectors.BPFHooks(ch, c.c.Hooks())
	all, err := c.c.Read()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	full, err := c.c.Full()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	for m, n := range full {
		collectors.BPFMapFull(ch, m, n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Namespaces of one label set (the host's several unnamed ones) are
	// summed: a label set is sent once.
	sums := map[podKey]*bpftc.Stats{}
	forgotten := map[podKey]*bpftc.Stats{}
	var stale []uint64
	snap := c.deps.Net.Snapshot()
	now := c.deps.Now()
	for ns, s := range all {
		k, ok := c.pod(ns)
		if !ok || (ns == bpftc.OverflowNetns && s == bpftc.Stats{}) {
			continue // the overflow slot shows once it counts
		}
		if ns != c.own && ns != bpftc.OverflowNetns {
			_, state, since := snap.Lookup(ns)
			if state == hostview.Unknown {
				c.deps.Net.Miss(ns) // created since the view's last walk, or gone before it
			}
			if state == hostview.Gone && now.Sub(since) > c.forgetAfter {
				stale = append(stale, ns)
				addTo(forgotten, k, &s)
			}
		}
		addTo(sums, k, &s)
	}
	for k, s := range c.retired {
		if sums[k] == nil {
			delete(c.retired, k) // no namespace has these labels now
			continue
		}
		bpftc.Add(sums[k], s)
	}
	for k, s := range forgotten {
		addTo(c.retired, k, s)
	}
	if len(stale) > 0 {
		// Shown once more (above), then gone from the map.
		c.c.Forget(stale)
		c.deps.Logger.Debug("tcpconnect: forgot counters of vanished namespaces", "namespaces", len(stale))
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

func addTo(m map[podKey]*bpftc.Stats, k podKey, s *bpftc.Stats) {
	if m[k] == nil {
		m[k] = &bpftc.Stats{}
	}
	bpftc.Add(m[k], s)
}

// pod names the pod of a namespace (the zero podKey for the host and
// namespaces of no known pod), and says whether it is counted at all.
func (c *collector) pod(ns uint64) (podKey, bool) {
	if ns == c.own {
		return podKey{}, true
	}
	if ns == bpftc.OverflowNetns {
		// More namespaces than the map holds (bpftc.MaxNamespaces).
		return podKey{pod: "_overflow"}, !c.ownOnly
	}
	if c.ownOnly {
		return podKey{}, false
	}
	pod, _ := c.deps.Pods.ByNetns(ns)
	return podKey{pod.Namespace, pod.Name}, true
}

func (c *collector) Close() error { return c.c.Close() }
