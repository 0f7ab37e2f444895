// Package netdev exports what each interface of the agent's namespace
// drops below the IP layer, by the kernel's own counters: rx/tx drops and
// errors (IFLA_STATS64), carrier changes (IFLA_CARRIER_CHANGES) and the
// root qdisc's drops, overlimits, requeues and backlog (TCA_STATS2).
//
// Counters change without a link event, so the agent's link view cannot
// carry them: a background loop dumps links and qdiscs over rtnetlink every
// --netdev.interval (two dump requests, never a per-interface or sysfs read)
// and a scrape reads the last dump from memory.
package netdev

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/series"
)

// Spec is the netdev collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "netdev",
	Help:           "Interface drops, errors and carrier changes (IFLA_STATS64) and root qdisc drops and backlog, from rtnetlink dumps in the background.",
	DefaultEnabled: true,
	Metrics: []string{
		"netsonde_interface_drops_total", "netsonde_interface_errors_total",
		"netsonde_interface_carrier_changes_total", "netsonde_qdisc_",
	},
	// Per interface, at most: drops in 2 directions, 11 error kinds,
	// carrier changes, and 4 series of a root qdisc (noqueue, the veth's
	// default, is not exported); each only once non-zero but the qdisc's.
	Budget: func(n, _ int) int { return 18 * n },
	Setup:  setup,
}

var (
	dropsDesc = prometheus.NewDesc(collectors.Namespace+"_interface_drops_total",
		"Packets the interface dropped (rtnl_link_stats64 rx_dropped, tx_dropped; as `ip -s link` shows them), once non-zero. Pod veths' host ends carry the pod.",
		[]string{"interface", "direction", "namespace", "pod"}, nil)
	errorsDesc = prometheus.NewDesc(collectors.Namespace+"_interface_errors_total",
		"Interface errors by kind (rtnl_link_stats64 rx_missed_errors is direction=rx, kind=missed; as `ip -s -s link` shows them), once non-zero.",
		[]string{"interface", "direction", "kind", "namespace", "pod"}, nil)
	carrierDesc = prometheus.NewDesc(collectors.Namespace+"_interface_carrier_changes_total",
		"Times the interface's carrier went up or down (the kernel's carrier_changes), once non-zero.",
		[]string{"interface", "namespace", "pod"}, nil)
	qdiscDropsDesc = prometheus.NewDesc(collectors.Namespace+"_qdisc_drops_total",
		"Packets the interface's root qdisc dropped (`tc -s qdisc` dropped).",
		[]string{"interface", "kind"}, nil)
	qdiscOverlimitsDesc = prometheus.NewDesc(collectors.Namespace+"_qdisc_overlimits_total",
		"Times the root qdisc was over its limit (`tc -s qdisc` overlimits).",
		[]string{"interface", "kind"}, nil)
	qdiscRequeuesDesc = prometheus.NewDesc(collectors.Namespace+"_qdisc_requeues_total",
		"Packets the root qdisc requeued because the driver refused them (`tc -s qdisc` requeues).",
		[]string{"interface", "kind"}, nil)
	qdiscBacklogDesc = prometheus.NewDesc(collectors.Namespace+"_qdisc_backlog_packets",
		"Packets queued in the root qdisc at the last read.",
		[]string{"interface", "kind"}, nil)
	skippedDesc = prometheus.NewDesc(collectors.Namespace+"_netdev_skipped_total",
		"Dump messages the collector could not read and skipped (an interface or qdisc without the attributes it needs).",
		[]string{"dump"}, nil)
)

// minInterval keeps the loop from spinning on the RTNL lock.
const minInterval = 100 * time.Millisecond

func setup(app *kingpin.Application) collectors.Factory {
	every := app.Flag("netdev.interval", "How often the interface and qdisc counters are read (two rtnetlink dumps in the background; a scrape reads the last).").
		Default("15s").Duration()
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		if *every < minInterval {
			return nil, collectors.Down("bad_flag", fmt.Errorf("--netdev.interval %v is below the %v minimum", *every, minInterval))
		}
		return start(ctx, deps, *every, dumper{})
	}
}

// snapshot is one round of dumps.
type snapshot struct {
	links  []linkStats
	qdiscs []qdiscStats
}

// source reads a round: the kernel's dumps, or fixed ones in a test.
type source interface {
	links() ([]linkStats, []error, error)
	qdiscs() ([]qdiscStats, []error, error)
}

type dumper struct{}

func (dumper) links() ([]linkStats, []error, error)   { return dumpLinks() }
func (dumper) qdiscs() ([]qdiscStats, []error, error) { return dumpQdiscs() }

type collector struct {
	deps collectors.Deps
	src  source
	last atomic.Pointer[snapshot]
	// skipped counts unreadable messages per dump ("link", "qdisc").
	skippedLinks, skippedQdiscs atomic.Uint64

	drops, errs, carrier                 *series.Cache[ifKey]
	qDrops, qOverlimits, qRequeues, qLen *series.Cache[qKey]

	poll *collectors.Poller
}

// ifKey labels an interface's series.
type ifKey struct {
	name, direction, kind string
	pod                   cluster.Pod
}

type qKey struct{ name, kind string }

func start(ctx context.Context, deps collectors.Deps, every time.Duration, src source) (*collector, error) {
	c := newCollector(deps, src)
	var err error
	if c.poll, err = collectors.StartPoller(ctx, every, deps.Logger, "netdev", "netlink_error", c.refresh); err != nil {
		return nil, err
	}
	return c, nil
}

func newCollector(deps collectors.Deps, src source) *collector {
	return &collector{
		deps: deps, src: src,
		drops:       series.NewCache[ifKey](dropsDesc, prometheus.CounterValue),
		errs:        series.NewCache[ifKey](errorsDesc, prometheus.CounterValue),
		carrier:     series.NewCache[ifKey](carrierDesc, prometheus.CounterValue),
		qDrops:      series.NewCache[qKey](qdiscDropsDesc, prometheus.CounterValue),
		qOverlimits: series.NewCache[qKey](qdiscOverlimitsDesc, prometheus.CounterValue),
		qRequeues:   series.NewCache[qKey](qdiscRequeuesDesc, prometheus.CounterValue),
		qLen:        series.NewCache[qKey](qdiscBacklogDesc, prometheus.GaugeValue),
	}
}

// refresh reads one round. A link or qdisc the kernel answered without
// the attributes needed (an interface deleted mid-dump) is skipped and
// counted; a failed qdisc dump keeps the links' round.
func (c *collector) refresh() error {
	links, badL, err := c.src.links()
	if err != nil {
		return err
	}
	c.skippedLinks.Add(uint64(len(badL)))
	qdiscs, badQ, qerr := c.src.qdiscs()
	c.skippedQdiscs.Add(uint64(len(badQ)))
	for _, e := range append(badL, badQ...) {
		c.deps.Logger.Debug("netdev: skipped a dump message", "err", e)
	}
	if qerr != nil {
		c.deps.Logger.Warn("netdev: reading qdisc statistics failed", "err", qerr)
		if prev := c.last.Load(); prev != nil {
			qdiscs = prev.qdiscs
		}
	}
	c.last.Store(&snapshot{links: links, qdiscs: qdiscs})
	return nil
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	s := c.last.Load()
	names := make(map[int]string, len(s.links))
	seen := make(map[string]bool, len(s.links))
	for _, l := range s.links {
		names[l.index] = l.name
		// A dump that raced a rename can hold a name twice: a page
		// never repeats a series.
		if seen[l.name] {
			continue
		}
		seen[l.name] = true
		c.collectLink(ch, &l)
	}
	seenQ := make(map[string]bool, len(s.qdiscs))
	for _, q := range s.qdiscs {
		name, ok := names[q.index]
		if !ok || q.kind == "noqueue" || seenQ[name] {
			// An interface gone between the two dumps, or one
			// without a queue (veths, lo): nothing to say.
			continue
		}
		seenQ[name] = true
		k := qKey{name: name, kind: q.kind}
		lv := func() []string { return []string{k.name, k.kind} }
		ch <- c.qDrops.Metric(k, float64(q.drops), lv)
		ch <- c.qOverlimits.Metric(k, float64(q.overlimits), lv)
		ch <- c.qRequeues.Metric(k, float64(q.requeues), lv)
		ch <- c.qLen.Metric(k, float64(q.qlen), lv)
	}
	for _, sc := range []*series.Cache[ifKey]{c.drops, c.errs, c.carrier} {
		sc.Sweep()
	}
	for _, sc := range []*series.Cache[qKey]{c.qDrops, c.qOverlimits, c.qRequeues, c.qLen} {
		sc.Sweep()
	}
	if n := c.skippedLinks.Load(); n > 0 {
		ch <- prometheus.MustNewConstMetric(skippedDesc, prometheus.CounterValue, float64(n), "link")
	}
	if n := c.skippedQdiscs.Load(); n > 0 {
		ch <- prometheus.MustNewConstMetric(skippedDesc, prometheus.CounterValue, float64(n), "qdisc")
	}
	return nil
}

func (c *collector) collectLink(ch chan<- prometheus.Metric, l *linkStats) {
	var pod cluster.Pod
	podLooked := false
	podOf := func() cluster.Pod {
		if !podLooked && c.deps.Pods != nil {
			pod, _ = c.deps.Pods.ByHostInterface(l.index)
			podLooked = true
		}
		return pod
	}
	for _, d := range []struct {
		stat      int
		direction string
	}{{statRxDropped, "rx"}, {statTxDropped, "tx"}} {
		if v, ok := l.stat(d.stat); ok && v > 0 {
			k := ifKey{name: l.name, direction: d.direction, pod: podOf()}
			ch <- c.drops.Metric(k, float64(v), func() []string {
				return []string{k.name, k.direction, k.pod.Namespace, k.pod.Name}
			})
		}
	}
	for _, e := range errorKinds {
		if v, ok := l.stat(e.stat); ok && v > 0 {
			k := ifKey{name: l.name, direction: e.direction, kind: e.kind, pod: podOf()}
			ch <- c.errs.Metric(k, float64(v), func() []string {
				return []string{k.name, k.direction, k.kind, k.pod.Namespace, k.pod.Name}
			})
		}
	}
	if l.hasCarrier && l.carrierChanges > 0 {
		k := ifKey{name: l.name, pod: podOf()}
		ch <- c.carrier.Metric(k, float64(l.carrierChanges), func() []string {
			return []string{k.name, k.pod.Namespace, k.pod.Name}
		})
	}
}

func (c *collector) Close() error {
	c.poll.Stop()
	return nil
}
