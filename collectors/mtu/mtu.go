// Package mtu exports the MTU of every interface in the agent's network
// namespace, from the agent's netlink view: a scrape reads memory only.
package mtu

import (
	"context"
	"errors"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/series"
)

// Spec is the MTU collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "mtu",
	Help:           "MTU of every network interface, kept current from netlink link events.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_interface_mtu_bytes"},
	// One per interface, whoever's it is.
	Budget: func(n, _ int) int { return n },
	Setup:  func(*kingpin.Application) collectors.Factory { return New },
}

var mtuDesc = prometheus.NewDesc(collectors.Namespace+"_interface_mtu_bytes",
	"MTU of the network interface, in bytes.",
	[]string{"interface", "kind", "namespace", "pod"}, nil)

type collector struct {
	deps   collectors.Deps
	series *series.Cache[mtuKey]
}

// mtuKey is what an interface's series is labelled from.
type mtuKey struct {
	name, kind string
	pod        cluster.Pod
}

// New builds the collector. It needs the agent's link view.
func New(_ context.Context, deps collectors.Deps) (collectors.Collector, error) {
	if deps.Net == nil {
		return nil, collectors.Down("no_netlink", errors.New("the agent has no netlink link view"))
	}
	return &collector{deps: deps, series: series.NewCache[mtuKey](mtuDesc, prometheus.GaugeValue)}, nil
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	// Names are unique in a namespace, but a dump that raced a rename can
	// hold one name twice for an instant; a page must never repeat a series,
	// so the newer interface (higher index) wins.
	links := c.deps.Net.Links()
	seen := make(map[string]bool, len(links))
	for i := len(links) - 1; i >= 0; i-- {
		l := links[i]
		if seen[l.Name] {
			continue
		}
		seen[l.Name] = true
		pod, _ := c.deps.Pods.ByHostInterface(l.Index)
		k := mtuKey{name: l.Name, kind: l.Kind, pod: pod}
		ch <- c.series.Metric(k, float64(l.MTU), func() []string {
			return []string{k.name, k.kind, k.pod.Namespace, k.pod.Name}
		})
	}
	c.series.Sweep()
	return nil
}

func (c *collector) Close() error { return nil }
