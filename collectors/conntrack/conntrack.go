// Package conntrack exports how full the connection tracking table is, what
// it drops, and (opt-in) who fills it, over ctnetlink. ctnetlink is the
// source because /proc/net/stat/nf_conntrack is absent on kernels built
// without CONFIG_NF_CONNTRACK_PROCFS (the default since 5.15.65), which is
// why node_exporter's conntrack statistics vanish on modern nodes.
package conntrack

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	ct "github.com/florianl/go-conntrack"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/collectors"
)

// Spec is the conntrack collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "conntrack",
	Help:           "Conntrack table fill, per-CPU statistics (drops, insert failures, ...) and an opt-in breakdown of who fills it, over ctnetlink.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_conntrack"},
	// Fixed, plus the breakdown's top sources when asked for.
	Budget: func(_, _ int) int { return 64 },
	Setup:  setup,
}

var (
	entriesDesc = prometheus.NewDesc(collectors.Namespace+"_conntrack_entries",
		"Connections in the conntrack table of the agent's network namespace.", nil, nil)
	limitDesc = prometheus.NewDesc(collectors.Namespace+"_conntrack_entries_limit",
		"Size limit of the conntrack table (net.netfilter.nf_conntrack_max); at the limit new connections are dropped.", nil, nil)
	eventsDesc = prometheus.NewDesc(collectors.Namespace+"_conntrack_events_total",
		"Conntrack statistics summed over CPUs, as `conntrack -S` prints them (drop: table full; insert_failed and clash_resolve: insert races, the DNS 5-second timeout; early_drop: evictions under pressure).",
		[]string{"event"}, nil)
	byStateDesc = prometheus.NewDesc(collectors.Namespace+"_conntrack_state_entries",
		"Conntrack entries by protocol and TCP state, from the last breakdown dump (--conntrack.breakdown-interval).",
		[]string{"protocol", "state"}, nil)
	topDesc = prometheus.NewDesc(collectors.Namespace+"_conntrack_top_entries",
		"Conntrack entries held by each of the top-N original source addresses, from the last breakdown dump; source=\"other\" sums the rest.",
		[]string{"source"}, nil)
	dumpDurationDesc = prometheus.NewDesc(collectors.Namespace+"_conntrack_breakdown_duration_seconds",
		"How long the last breakdown dump of the conntrack table took.", nil, nil)
	dumpTimeDesc = prometheus.NewDesc(collectors.Namespace+"_conntrack_breakdown_timestamp_seconds",
		"When the last breakdown dump finished (Unix time).", nil, nil)
)

type config struct {
	interval   *time.Duration
	topN       *int
	maxSources *int
}

func setup(app *kingpin.Application) collectors.Factory {
	c := config{
		interval: app.Flag("conntrack.breakdown-interval", "Dump the table this often to break entries down by protocol/state and top sources; 0 turns the breakdown off. Each dump reads every entry: see README for its cost.").
			Default("0s").Duration(),
		topN: app.Flag("conntrack.breakdown-top", "How many source addresses the breakdown names.").Default("10").Int(),
		maxSources: app.Flag("conntrack.breakdown-max-sources", "Distinct source addresses a dump tracks at most (bounds its memory); entries of further sources count as other.").
			Default("65536").Int(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		return start(ctx, deps, c)
	}
}

// source is where Collect reads the table's statistics: ctnetlink, or
// fixed counts in a test.
type source interface {
	stats() (stats, error)
	Close() error
}

// ctnetlink is the kernel's source.
type ctnetlink struct{ *ct.Nfct }

func (c ctnetlink) stats() (stats, error) { return readStats(c.Nfct) }

type collector struct {
	deps collectors.Deps
	mu   sync.Mutex // one request at a time on the connection
	src  source

	bmu  sync.Mutex
	last *breakdown
	stop context.CancelFunc
	done chan struct{}
}

func start(ctx context.Context, deps collectors.Deps, c config) (collectors.Collector, error) {
	if *c.interval > 0 && *c.interval < 10*time.Second {
		return nil, collectors.Down("bad_flag", fmt.Errorf("--conntrack.breakdown-interval %v is below the 10s minimum", *c.interval))
	}
	nfct, err := ct.Open(&ct.Config{})
	if err != nil {
		return nil, collectors.Down(reasonFor(err), fmt.Errorf("open ctnetlink: %w", err))
	}
	col := &collector{deps: deps, src: ctnetlink{nfct}, done: make(chan struct{})}
	if _, err := readStats(nfct); err != nil {
		nfct.Close()
		return nil, collectors.Down(reasonFor(err), err)
	}
	ctx, col.stop = context.WithCancel(ctx)
	if *c.interval > 0 {
		go col.breakdownLoop(ctx, *c.interval, *c.topN, *c.maxSources)
	} else {
		close(col.done)
	}
	return col, nil
}

// reasonFor tells "conntrack is not there" from "we may not look".
func reasonFor(err error) string {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return "not_permitted"
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT):
		return "not_loaded"
	default:
		return "ctnetlink_error"
	}
}

func (c *collector) breakdownLoop(ctx context.Context, every time.Duration, topN, maxSources int) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		b, err := dumpBreakdown(ctx, topN, maxSources)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.deps.Logger.Warn("conntrack breakdown dump failed", "err", err)
		} else {
			c.bmu.Lock()
			c.last = &b
			c.bmu.Unlock()
			c.deps.Logger.Debug("conntrack breakdown", "entries", b.entries, "took", b.took)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	s, err := c.src.stats()
	c.mu.Unlock()
	if err != nil {
		return collectors.Down(reasonFor(err), err)
	}
	ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(s.entries))
	limit, ok := s.limit, s.hasLimit
	if !ok {
		// Kernels before 4.18 do not report the limit over ctnetlink.
		limit, ok = readLimit(c.deps.Proc)
	}
	if ok {
		ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(limit))
	}
	for name, v := range s.events {
		ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(v), name)
	}
	c.bmu.Lock()
	b := c.last
	c.bmu.Unlock()
	if b != nil {
		for ps, n := range b.byState {
			ch <- prometheus.MustNewConstMetric(byStateDesc, prometheus.GaugeValue, float64(n), ps.proto, ps.state)
		}
		for _, s := range b.top {
			ch <- prometheus.MustNewConstMetric(topDesc, prometheus.GaugeValue, float64(s.count), s.addr.String())
		}
		ch <- prometheus.MustNewConstMetric(topDesc, prometheus.GaugeValue, float64(b.others), "other")
		ch <- prometheus.MustNewConstMetric(dumpDurationDesc, prometheus.GaugeValue, b.took.Seconds())
		ch <- prometheus.MustNewConstMetric(dumpTimeDesc, prometheus.GaugeValue, float64(b.finished.UnixNano())/1e9)
	}
	return nil
}

func readLimit(proc collectors.ProcFS) (uint64, bool) {
	b, err := proc.ReadFile("sys/net/netfilter/nf_conntrack_max")
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}

func (c *collector) Close() error {
	c.stop()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.src.Close()
}
