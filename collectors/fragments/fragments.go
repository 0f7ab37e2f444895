// Package fragments exports IP fragmentation as it crosses the node's
// interfaces and the ICMP messages that tell a sender its packets were too
// big: the trail an MTU problem leaves. Fragments and received ICMP are
// counted by TCX programs on every selected interface (following
// interfaces as they come and go); sent ICMP frag-needed at icmp_send; and
// the kernel's own fragmentation and reassembly counters from
// /proc/net/snmp{,6}.
package fragments

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/alecthomas/kingpin/v2"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"

	bpffrag "github.com/netsonde/netsonde/bpf/frag"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/linkwatch"
	"github.com/netsonde/netsonde/netnsnames"
)

// Spec is the fragments collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "fragments",
	Help:           "IP fragments and ICMP frag-needed per interface (eBPF TCX and icmp:icmp_send), and the kernel's fragmentation/reassembly counters.",
	DefaultEnabled: true,
	Setup:          setup,
}

var (
	fragDesc = prometheus.NewDesc(collectors.Namespace+"_ip_fragments_total",
		"IP fragments seen on the interface: IPv4 packets with MF set or a non-zero offset, IPv6 packets with a fragment header.",
		[]string{"interface", "direction", "family"}, nil)
	icmpDesc = prometheus.NewDesc(collectors.Namespace+"_icmp_frag_needed_total",
		"ICMP fragmentation-needed (IPv4 type 3 code 4) and packet-too-big (ICMPv6 type 2) messages: sent by this host (interface: where the too-big packet came in, for IPv4; where the message left, for IPv6) or received.",
		[]string{"direction", "family", "interface"}, nil)
	eventsDesc = prometheus.NewDesc(collectors.Namespace+"_ip_fragmentation_events_total",
		"The kernel's fragmentation and reassembly counters (/proc/net/snmp, /proc/net/snmp6) for the agent's network namespace.",
		[]string{"event", "family"}, nil)
	attachedDesc = prometheus.NewDesc(collectors.Namespace+"_fragments_attached_interfaces",
		"Interfaces with the fragment counters attached.", nil, nil)
	failuresDesc = prometheus.NewDesc(collectors.Namespace+"_fragments_attach_failures_total",
		"Failed attempts to attach the fragment counters to an interface.", nil, nil)
)

type config struct {
	include, exclude *regexp.Regexp
	icmpGroup        *string
}

func setup(app *kingpin.Application) collectors.Factory {
	include := app.Flag("fragments.include", "Interfaces (regular expression on the name) to count fragments on.").Default(".*").Regexp()
	exclude := app.Flag("fragments.exclude", "Interfaces (regular expression) not to count fragments on; loopback by default.").Default("^lo$").Regexp()
	group := app.Flag("fragments.icmp-tracepoint-group", "Tracepoint group of icmp_send (for testing a missing hook).").Default("icmp").Hidden().String()
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		return start(ctx, deps, config{include: *include, exclude: *exclude, icmpGroup: group})
	}
}

type collector struct {
	deps     collectors.Deps
	cfg      config
	c        *bpffrag.Counter
	failures atomic.Uint64
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex // one Collect at a time: it forgets stale keys
}

func start(ctx context.Context, deps collectors.Deps, cfg config) (collectors.Collector, error) {
	if deps.Links == nil {
		return nil, collectors.Down("no_netlink", errors.New("the agent has no netlink link view"))
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, collectors.Down("memlock", err)
	}
	own, err := netnsnames.Inode("/proc/thread-self/ns/net")
	if err != nil {
		return nil, collectors.Down("netns", err)
	}
	c, icmpErr, err := bpffrag.Load(bpffrag.Options{OwnNetns: uint32(own), ICMPGroup: *cfg.icmpGroup})
	if err != nil {
		return nil, collectors.BPFLoadDown(err, "load_failed")
	}
	if icmpErr != nil {
		deps.Logger.Warn("ICMP frag-needed sent by this host will not be counted; fragments still are", "err", icmpErr)
	}
	col := &collector{deps: deps, cfg: cfg, c: c, done: make(chan struct{})}
	changed, unsubscribe := deps.Links.Subscribe()
	col.sync()
	ctx, col.cancel = context.WithCancel(ctx)
	go func() {
		defer close(col.done)
		defer unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				col.sync()
			}
		}
	}()
	return col, nil
}

// sync attaches to every selected interface that has no programs yet and
// detaches from interfaces that are gone: one pass over the link view per
// batch of link events (notifications coalesce), so thousands of new
// interfaces cost one pass, not thousands.
func (c *collector) sync() {
	links := c.deps.Links.Links()
	want := make(map[int]linkwatch.Link, len(links))
	for _, l := range links {
		if c.cfg.include.MatchString(l.Name) && !c.cfg.exclude.MatchString(l.Name) {
			want[l.Index] = l
		}
	}
	have := c.c.Attached()
	for idx := range have {
		if _, ok := want[idx]; !ok {
			c.c.Detach(idx)
		}
	}
	for idx, l := range want {
		if have[idx] {
			continue
		}
		if err := c.c.Attach(idx, l.Attrs.Attrs().EncapType != "ether"); err != nil {
			c.failures.Add(1)
			c.deps.Logger.Warn("cannot count fragments on interface", "interface", l.Name, "err", err)
		}
	}
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	collectors.BPFProgramAttached(ch, "frag_tcx", true)
	collectors.BPFProgramAttached(ch, "icmp_send", c.c.ICMPAttached())
	ch <- prometheus.MustNewConstMetric(attachedDesc, prometheus.GaugeValue, float64(len(c.c.Attached())))
	ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(c.failures.Load()))

	counts, err := c.c.Read()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	var stale []bpffrag.Key
	for k, v := range counts {
		l, ok := c.deps.Links.ByIndex(int(k.Ifindex))
		if !ok {
			stale = append(stale, k) // the interface is gone: so is its series
			continue
		}
		fam := fmt.Sprintf("ipv%d", k.Family)
		switch k.What {
		case bpffrag.WhatFragment:
			dir := "ingress"
			if k.Direction == bpffrag.Egress {
				dir = "egress"
			}
			ch <- prometheus.MustNewConstMetric(fragDesc, prometheus.CounterValue, float64(v), l.Name, dir, fam)
		case bpffrag.WhatFragNeeded:
			dir := "received"
			if k.Direction == bpffrag.Egress {
				dir = "sent"
			}
			ch <- prometheus.MustNewConstMetric(icmpDesc, prometheus.CounterValue, float64(v), dir, fam, l.Name)
		}
	}
	if len(stale) > 0 {
		c.c.Forget(stale)
	}
	events, err := readSNMP(c.deps.ProcPath)
	if err != nil {
		return collectors.Down("snmp", err)
	}
	for event, fams := range events {
		for fam, v := range fams {
			ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(v), event, fam)
		}
	}
	return nil
}

func (c *collector) Close() error {
	c.cancel()
	<-c.done
	return c.c.Close()
}
