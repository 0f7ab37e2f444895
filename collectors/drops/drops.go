// Package drops exports every packet the kernel drops, counted in the
// kernel by the kernel's own drop reason, protocol, interface and network
// namespace: netsonde_packet_drops_total.
package drops

import (
	"context"
	"errors"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	bpfdrops "github.com/netsonde/netsonde/bpf/drops"
	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/series"
	"github.com/netsonde/netsonde/internal/decode"
	"github.com/netsonde/netsonde/internal/dropreason"
	"github.com/netsonde/netsonde/internal/hostview"
)

// Spec is the drops collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "drops",
	Help:           "Packets dropped by the kernel, by drop reason, protocol, interface and pod (eBPF on kfree_skb).",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_packet_drops"},
	// One per (reason, protocol, interface or pod namespace) seen
	// dropping, bounded by --drops.map-size plus the per-CPU fast path;
	// a quiet node shows one or two reasons per interface.
	Budget: func(n, p int) int { return 2*(n+p) + 64 },
	Setup:  setup,
}

var (
	dropsDesc = prometheus.NewDesc(collectors.Namespace+"_packet_drops_total",
		"Packets dropped by the kernel, by the kernel's drop reason (enum skb_drop_reason).",
		[]string{"reason", "protocol", "interface", "namespace", "pod"}, nil)
	overflowDesc = prometheus.NewDesc(collectors.Namespace+"_packet_drops_overflow_total",
		"Drops counted without protocol, interface and pod because the kernel map was full; they are included in netsonde_packet_drops_total with those labels empty.",
		nil, nil)
	refusedDesc = prometheus.NewDesc(collectors.Namespace+"_packet_drops_quota_refused_total",
		"Drops counted without protocol, interface and pod because their interface or network namespace held all the kernel map keys it may (--drops.max-keys-per-interface, --drops.max-keys-per-namespace); they are included in netsonde_packet_drops_total with those labels empty.",
		nil, nil)
)

type config struct {
	attach    *string
	tracefs   *string
	btfDir    *string
	forgetFor *time.Duration
	mapSize   *uint32
	perIface  *uint32
	perNetns  *uint32
	onlyNetns *[]uint64
}

func setup(app *kingpin.Application) collectors.Factory {
	c := config{
		attach: app.Flag("drops.attach", "How to attach: auto (tp_btf, then raw_tp, then the classic tracepoint), tp_btf, raw_tp, or tracepoint.").
			Default("auto").Enum("auto", loader.HookTPBTF, loader.HookRawTP, loader.HookTracepoint),
		tracefs: app.Flag("drops.tracefs", "tracefs directory to read the classic tracepoint from; default: the host's if mounted, else one mounted privately by the agent.").
			Default("").String(),
		btfDir: app.Flag("drops.btf-dir", "Where the kernel's BTF is (drop reason names).").
			Default("/sys/kernel/btf").String(),
		mapSize: app.Flag("drops.map-size", "Distinct (reason, protocol, interface, namespace) keys the kernel map holds; drops beyond it are still counted by reason, without the other labels. At the default, a per-CPU table of 256 hot keys sits in front of the map (the fast path); below it, that table is off and this is the exact bound.").
			Default("8192").Uint32(),
		perIface: app.Flag("drops.max-keys-per-interface", "Distinct (reason, protocol) keys one interface may hold in the kernel map, so that one pod cannot take the map from the others; drops of keys past it are counted by reason alone (netsonde_packet_drops_quota_refused_total). 0: no limit.").
			Default(strconv.Itoa(bpfdrops.DefaultMaxKeysPerInterface)).Uint32(),
		perNetns: app.Flag("drops.max-keys-per-namespace", "Keys one network namespace (a pod, all its interfaces) may hold in the kernel map; the node's own namespace is exempt. Drops past it are counted as for --drops.max-keys-per-interface. 0: no limit.").
			Default(strconv.Itoa(bpfdrops.DefaultMaxKeysPerNetns)).Uint32(),
		onlyNetns: app.Flag("drops.only-netns", "For tests: count only the drops in these network namespaces (by cookie, SO_NETNS_COOKIE), so that a test's figures are exact while the rest of the machine drops too.").
			Hidden().Uint64List(),
		forgetFor: app.Flag("drops.forget-after", "Forget counters of an interface or network namespace this long after it disappeared, so their series go with them.").
			Default("2m").Duration(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		return start(deps, c)
	}
}

// probe is what Collect uses of the loaded program (*bpfdrops.Probe), so
// that a test can serve fixed counts.
type probe interface {
	Read() (bpfdrops.Counts, error)
	Hooks() map[string]string
	Forget(keys []bpfdrops.Key) map[bpfdrops.Key]uint64
	Close() error
}

type collector struct {
	deps      collectors.Deps
	probe     probe
	reasons   dropreason.Names
	forgetFor time.Duration
	mu        sync.Mutex // one Collect at a time: it deletes stale keys

	// last holds each key's labels as of the previous scrape (updated in
	// place: one map, not two swapped, as it holds every key of the
	// kernel's map, tens of thousands on a busy node), and retired the
	// counts of forgotten keys that were part of a host series: both keep
	// every series monotonic when namespaces come and go.
	last    map[bpfdrops.Key]labels
	missing map[bpfdrops.Key]time.Time
	retired map[labels]uint64
	// series keeps the rendered labels of every drop series.
	series *series.Cache[labels]
	// Scratch maps of Collect, reused.
	sums  map[labels]uint64
	alive map[uint64]bool

	// capt runs `netsonde capture`; nil for a probe that cannot.
	capt *capturer
}

func start(deps collectors.Deps, c config) (collectors.Collector, error) {
	reasons, err := deps.DropReasons.Names(*c.btfDir)
	// The kernel's BTF file, read whole (a few MiB), is garbage from here
	// on, whatever happens next: return it to the OS rather than carry it.
	defer debug.FreeOSMemory()
	if err != nil {
		return nil, collectors.Down("no_btf", err)
	}
	if deps.Net == nil {
		return nil, collectors.Down("no_netlink", errors.New("the agent has no view of the host's network to name interfaces"))
	}
	opts := bpfdrops.Options{MapSize: *c.mapSize, TracefsRoot: *c.tracefs, BTF: deps.BTF,
		MaxKeysPerInterface: *c.perIface, MaxKeysPerNetns: *c.perNetns,
		// The node's namespace holds every host interface: no pod's.
		OwnNetns: deps.Net.Snapshot().Own(), OnlyNetns: *c.onlyNetns}
	if *c.attach != "auto" {
		opts.Hooks = []string{*c.attach}
	}
	probe, err := bpfdrops.Load(opts)
	if err != nil {
		return nil, collectors.BPFLoadDown(err, "attach_failed")
	}
	deps.Logger.Info("drop counter attached", "hook", probe.Hook(), "tried", probe.Tried()[bpfdrops.Program], "reasons", len(reasons))
	return newCollector(deps, probe, reasons, *c.forgetFor), nil
}

func newCollector(deps collectors.Deps, p probe, reasons dropreason.Names, forgetFor time.Duration) *collector {
	c := &collector{deps: deps, probe: p, reasons: reasons, forgetFor: forgetFor,
		series: series.NewCache[labels](dropsDesc, prometheus.CounterValue),
		last:   map[bpfdrops.Key]labels{}, missing: map[bpfdrops.Key]time.Time{}, retired: map[labels]uint64{},
		sums: map[labels]uint64{}, alive: map[uint64]bool{}}
	if cp, ok := p.(captureProbe); ok {
		c.capt = &capturer{probe: cp}
	}
	return c
}

type labels struct{ reason, protocol, iface, namespace, pod string }

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	collectors.BPFHooks(ch, c.probe.Hooks())
	counts, err := c.probe.Read()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	// The per-scrape maps are kept and cleared, not remade: at 1,000
	// interfaces they are most of the collector's allocations.
	sums, alive := c.sums, c.alive
	clear(sums)
	clear(alive)
	// Keys of last not seen this scrape, or not named now (unknown or
	// forgotten), are deleted after the loop.
	var unseen []bpfdrops.Key
	for k := range c.last {
		if _, ok := counts.ByKey[k]; !ok {
			unseen = append(unseen, k)
		}
	}
	for l, v := range c.retired {
		sums[l] += v
	}
	var stale []bpfdrops.Key
	type read struct {
		l labels
		v uint64
	}
	staleRead := map[bpfdrops.Key]read{}
	forgotten := map[labels]uint64{}
	now := c.deps.Now()
	snap := c.deps.Net.Snapshot()
	for k, v := range counts.ByKey {
		l := labels{reason: c.reasons.Name(k.Reason), protocol: decode.EtherTypeName(k.Protocol)}
		if k.Netns != 0 {
			alive[k.Netns] = true
			res := c.name(snap, k.Netns, int(k.Ifindex))
			if res.unknown {
				// A namespace the view has not read yet (created since
				// its last walk): asked for, and counted on a later
				// scrape under its names rather than now without them.
				c.deps.Net.Miss(k.Netns)
				unseen = append(unseen, k)
				continue
			}
			last, known := c.last[k]
			foreign := k.Netns != snap.Own()
			if gone := res.gone || (k.Ifindex != 0 && !res.found); gone && known {
				// The interface or its namespace is gone: keep the counts
				// under the labels they had, so no series jumps, until
				// they are forgotten.
				l = last
				since, ok := c.missing[k]
				if !ok {
					since = now
					c.missing[k] = now
				}
				if now.Sub(since) > c.forgetFor {
					stale = append(stale, k)
					staleRead[k] = read{l, v}
					delete(c.missing, k)
					forgotten[l] += v
					sums[l] += v // shown one last time, then gone
					unseen = append(unseen, k)
					continue
				}
			} else {
				delete(c.missing, k)
				l.iface = res.name
				if foreign {
					pod, _ := c.deps.Pods.ByNetns(k.Netns)
					l.namespace, l.pod = pod.Namespace, pod.Name
				}
			}
		}
		c.last[k] = l
		sums[l] += v
	}
	for _, k := range unseen {
		delete(c.last, k)
	}
	if len(stale) > 0 {
		// Deleted now, not after the page is written: a drop counted
		// on a stale key since the read above (its interface's index
		// reused in the same namespace) comes back in its final count
		// and is kept under the key's labels, not lost with the key.
		for k, final := range c.probe.Forget(stale) {
			r := staleRead[k]
			if final > r.v {
				forgotten[r.l] += final - r.v
				sums[r.l] += final - r.v
			}
		}
		c.deps.Logger.Debug("forgot drop counters of vanished namespaces", "keys", len(stale))
	}
	// A series made of several keys (standalone: the same interface name
	// in many namespaces) keeps the counts of the keys forgotten under it
	// while any key of it lives, so it never decreases; once none does,
	// the series ends. Whether a key of it lives is asked only of the
	// series with forgotten keys, usually none: the set of every live
	// series' labels it was asked of, kept between scrapes, held as much
	// as sums.
	if len(forgotten) > 0 || len(c.retired) > 0 {
		live := make(map[labels]bool, len(forgotten)+len(c.retired))
		for l := range forgotten {
			live[l] = false
		}
		for l := range c.retired {
			live[l] = false
		}
		for _, l := range c.last {
			if _, asked := live[l]; asked {
				live[l] = true
			}
		}
		for l, v := range forgotten {
			if live[l] {
				c.retired[l] += v
			}
		}
		for l := range c.retired {
			if !live[l] {
				delete(c.retired, l)
			}
		}
	}
	var overflowed, refused uint64
	for reason, v := range counts.Overflow {
		sums[labels{reason: c.reasons.Name(reason)}] += v
		overflowed += v
	}
	for reason, v := range counts.Refused {
		sums[labels{reason: c.reasons.Name(reason)}] += v
		refused += v
	}
	if counts.Lost > 0 {
		sums[labels{reason: "unknown"}] += counts.Lost
		overflowed += counts.Lost
	}
	for l, v := range sums {
		ch <- c.series.Metric(l, float64(v), func() []string {
			return []string{l.reason, l.protocol, l.iface, l.namespace, l.pod}
		})
	}
	c.series.Sweep()
	ch <- prometheus.MustNewConstMetric(overflowDesc, prometheus.CounterValue, float64(overflowed))
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(refused))
	// The same events in the form every map reports: "drops" full means
	// keyed by reason alone, "drops_overflow" full means not even that.
	collectors.BPFMapFull(ch, "drops", overflowed)
	collectors.BPFMapFull(ch, "drops_overflow", counts.Lost)
	return nil
}

// ifName is an interface's name as the host network view knows it.
type ifName struct {
	name  string
	found bool
	// gone: the namespace was found before and is not now; unknown: the
	// view has not met the namespace at all yet.
	gone, unknown bool
}

// name names ifindex in namespace netns from the snapshot and the live
// link view: memory only, no netlink on the scrape path.
func (c *collector) name(snap *hostview.Snapshot, netns uint64, ifindex int) ifName {
	if netns == snap.Own() {
		if ifindex == 0 {
			return ifName{}
		}
		l, ok := c.deps.Net.ByIndex(ifindex)
		return ifName{name: l.Name, found: ok}
	}
	ns, state, _ := snap.Lookup(netns)
	switch state {
	case hostview.Unknown:
		return ifName{unknown: true}
	case hostview.Gone:
		return ifName{gone: true}
	}
	if ifindex == 0 {
		return ifName{}
	}
	l, ok := ns.Links[ifindex]
	return ifName{name: l.Name, found: ok}
}

func (c *collector) Close() error { return c.probe.Close() }
