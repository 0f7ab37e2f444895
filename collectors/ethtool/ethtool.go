// Package ethtool exports the few driver statistics (`ethtool -S`) that
// are drops or their causes, by the driver's own names: a NIC ring that
// overflowed (rx_missed_errors), an AWS instance over its allowances
// (pps_allowance_exceeded), mlx5 without receive buffers, a veth's XDP
// drops. node_exporter's ethtool collector exports every statistic, hundreds
// of series per device; netsonde reads them all in the background and keeps
// a named list (names.go), each summed over queues, once non-zero.
package ethtool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/series"
)

// Spec is the ethtool collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "ethtool",
	Help:           "Driver statistics that are drops (ethtool -S: rx_missed_errors, ENA allowances, mlx5 rx_out_of_buffer, per-queue drops such as veth's XDP drops), summed over queues, read in the background.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_nic_"},
	// The named counters a driver has, once non-zero: no driver has more
	// than 6 of the list (per-queue ones summed), plus the read errors.
	Budget: func(n, _ int) int { return 6*n + 1 },
	Setup:  setup,
}

var (
	dropsDesc = prometheus.NewDesc(collectors.Namespace+"_nic_drops_total",
		"Driver statistics that are drops or their causes (`ethtool -S`), by the driver's own name; per-queue counters summed over queues with the queue number as N (rx_queue_N_xdp_drops). Only once non-zero.",
		[]string{"interface", "counter"}, nil)
	errorsDesc = prometheus.NewDesc(collectors.Namespace+"_nic_stats_errors_total",
		"Reads of an interface's driver statistics that failed (the interface went away during the read, or its driver refused or changed its list), and were skipped.",
		nil, nil)
)

const minInterval = 100 * time.Millisecond

func setup(app *kingpin.Application) collectors.Factory {
	every := app.Flag("ethtool.interval", "How often the driver statistics of every interface are read (one SIOCETHTOOL request per interface that has statistics, in the background; a scrape reads the last).").
		Default("15s").Duration()
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		if *every < minInterval {
			return nil, collectors.Down("bad_flag", fmt.Errorf("--ethtool.interval %v is below the %v minimum", *every, minInterval))
		}
		if deps.Net == nil {
			return nil, collectors.Down("no_netlink", errors.New("the agent has no netlink link view"))
		}
		s, err := openIoctls()
		if err != nil {
			return nil, collectors.Down("no_socket", err)
		}
		c := newCollector(deps, s)
		// refresh counts a driver's failures itself: never an error.
		c.poll, _ = collectors.StartPoller(ctx, *every, deps.Logger, "ethtool", "", func() error { c.refresh(); return nil })
		return c, nil
	}
}

// driver is what answers for the driver's statistics: the ioctls, or a
// fake in a test.
type driver interface {
	count(dev string) (int, error)
	names(dev string, n int) ([]string, error)
	values(dev string, n int) ([]uint64, error)
	Close() error
}

// iface is what a round remembers of an interface's driver: how many
// statistics it had and which of them are exported.
type iface struct {
	name string
	n    int
	// idx are the positions of the exported statistics, counter their
	// series' counter label.
	idx     []int
	counter []string
}

type sample struct {
	iface, counter string
	v              uint64
}

type collector struct {
	deps collectors.Deps
	drv  driver
	// known is by ifindex; only the loop touches it.
	known  map[int]*iface
	last   atomic.Pointer[[]sample]
	errs   atomic.Uint64
	series *series.Cache[[2]string]
	poll   *collectors.Poller
}

func newCollector(deps collectors.Deps, drv driver) *collector {
	c := &collector{deps: deps, drv: drv, known: map[int]*iface{},
		series: series.NewCache[[2]string](dropsDesc, prometheus.CounterValue)}
	c.last.Store(&[]sample{})
	return c
}

// refresh reads every interface's statistics once.
func (c *collector) refresh() {
	links := c.deps.Net.Links()
	present := make(map[int]bool, len(links))
	var out []sample
	for _, l := range links {
		present[l.Index] = true
		f := c.known[l.Index]
		if f == nil || f.name != l.Name {
			var err error
			if f, err = c.learn(l.Name); err != nil {
				c.failed(l.Name, err)
				continue
			}
			c.known[l.Index] = f
		}
		if len(f.idx) == 0 {
			continue // no statistic of the list: nothing to read
		}
		vals, err := c.drv.values(f.name, f.n)
		if err == nil && len(vals) != f.n {
			// The driver's list changed (queues added or removed):
			// its names are read again next round.
			err = fmt.Errorf("%s has %d statistics, had %d", f.name, len(vals), f.n)
			delete(c.known, l.Index)
		}
		if err != nil {
			c.failed(l.Name, err)
			continue
		}
		// Sum per counter (queues into one) in place: a driver has a
		// handful of the list, and a map per interface per round was
		// most of a round's garbage.
		start := len(out)
	stats:
		for i, j := range f.idx {
			for k := start; k < len(out); k++ {
				if out[k].counter == f.counter[i] {
					out[k].v += vals[j]
					continue stats
				}
			}
			out = append(out, sample{iface: f.name, counter: f.counter[i], v: vals[j]})
		}
		out = slices.DeleteFunc(out, func(s sample) bool { return s.v == 0 })
	}
	for i := range c.known {
		if !present[i] {
			delete(c.known, i)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].iface != out[j].iface {
			return out[i].iface < out[j].iface
		}
		return out[i].counter < out[j].counter
	})
	c.last.Store(&out)
}

// learn reads an interface's statistics' names. An interface whose driver
// has none (lo, most virtual devices) or no ethtool support at all is
// remembered as having nothing of the list.
func (c *collector) learn(dev string) (*iface, error) {
	f := &iface{name: dev}
	n, err := c.drv.count(dev)
	if errors.Is(err, unix.EOPNOTSUPP) || n == 0 && err == nil {
		return f, nil
	}
	if err != nil {
		return nil, err
	}
	names, err := c.drv.names(dev, n)
	if err != nil {
		return nil, err
	}
	f.n = len(names)
	for i, s := range names {
		if name, ok := counterName(s); ok {
			f.idx = append(f.idx, i)
			f.counter = append(f.counter, name)
		}
	}
	return f, nil
}

func (c *collector) failed(dev string, err error) {
	c.errs.Add(1)
	c.deps.Logger.Debug("ethtool: skipped an interface's driver statistics", "interface", dev, "err", err)
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	seen := map[[2]string]bool{}
	for _, s := range *c.last.Load() {
		k := [2]string{s.iface, s.counter}
		if seen[k] {
			continue // a name held twice in a round that raced a rename
		}
		seen[k] = true
		ch <- c.series.Metric(k, float64(s.v), func() []string { return k[:] })
	}
	c.series.Sweep()
	ch <- prometheus.MustNewConstMetric(errorsDesc, prometheus.CounterValue, float64(c.errs.Load()))
	return nil
}

func (c *collector) Close() error {
	c.poll.Stop()
	return c.drv.Close()
}
