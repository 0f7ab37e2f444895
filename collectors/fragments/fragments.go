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

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	bpffrag "github.com/netsonde/netsonde/bpf/fragments"
	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/hostview"
)

// Spec is the fragments collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "fragments",
	Help:           "IP fragments and ICMP frag-needed per interface (eBPF TCX and icmp:icmp_send), and the kernel's fragmentation/reassembly counters.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_ip_fragment", "netsonde_icmp_frag", "netsonde_fragments_"},
	// Direction × family per interface that fragments, node-wide counters.
	Budget: func(n, _ int) int { return 4*n + 32 },
	Setup:  setup,
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
	icmpAttach       *string
	attach           *string
}

func setup(app *kingpin.Application) collectors.Factory {
	include := app.Flag("fragments.include", "Interfaces (regular expression on the name) to count fragments on.").Default(".*").Regexp()
	exclude := app.Flag("fragments.exclude", "Interfaces (regular expression) not to count fragments on; loopback by default.").Default("^lo$").Regexp()
	attach := app.Flag("fragments.attach", "How to attach to interfaces: auto (TCX where the kernel has it, 6.6+; else a clsact qdisc with a cls_bpf filter), tcx, or tc (when another tool owns the TCX ordering).").
		Default(bpffrag.ModeAuto).Enum(bpffrag.ModeAuto, bpffrag.ModeTCX, bpffrag.ModeTC)
	group := app.Flag("fragments.icmp-tracepoint-group", "Tracepoint group of the classic icmp_send tracepoint (for testing a missing hook, with --fragments.icmp-attach=tracepoint).").Default("icmp").Hidden().String()
	icmpAttach := app.Flag("fragments.icmp-attach", "How to attach the icmp_send counter: auto (tp_btf, raw_tp, fentry, then the classic tracepoint) or one of them.").
		Default("auto").Hidden().Enum("auto", loader.HookTPBTF, loader.HookRawTP, loader.HookFentry, loader.HookTracepoint)
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		return start(ctx, deps, config{include: *include, exclude: *exclude, icmpGroup: group, icmpAttach: icmpAttach, attach: attach})
	}
}

// counter is what the collector uses of the loaded programs after start
// (*bpffrag.Probe), so that a test can serve fixed counts.
type counter interface {
	Hooks() map[string]string
	Read() (map[bpffrag.Key]uint64, error)
	Full() (uint64, error)
	Forget(keys []bpffrag.Key)
	Close() error
}

type collector struct {
	deps   collectors.Deps
	c      counter
	ifaces *collectors.Interfaces[bool] // by l3
	mu     sync.Mutex                   // one Collect at a time: it forgets stale keys
}

func start(ctx context.Context, deps collectors.Deps, cfg config) (collectors.Collector, error) {
	if deps.Net == nil {
		return nil, collectors.Down("no_netlink", errors.New("the agent has no netlink link view"))
	}
	opts := bpffrag.Options{OwnNetns: deps.Net.Snapshot().Own(), Mode: *cfg.attach, ICMPGroup: *cfg.icmpGroup, BTF: deps.BTF}
	if *cfg.icmpAttach != "auto" {
		opts.ICMPHooks = []string{*cfg.icmpAttach}
	}
	c, err := bpffrag.Load(opts)
	if err != nil {
		return nil, collectors.BPFLoadDown(err, "load_failed")
	}
	if err := c.ICMPErr(); err != nil {
		deps.Logger.Warn("ICMP frag-needed sent by this host will not be counted; fragments still are", "err", err)
	}
	col := &collector{deps: deps, c: c}
	col.ifaces = collectors.NewInterfaces(deps, c.Interfaces(), collectors.InterfaceOptions[bool]{What: "fragment",
		Want: func(l hostview.Link) (bool, bool) {
			if !cfg.include.MatchString(l.Name) || cfg.exclude.MatchString(l.Name) {
				return false, false
			}
			return l.Attrs.Attrs().EncapType != "ether", true // l3
		}})
	col.ifaces.Start(ctx)
	return col, nil
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// One series per hook in use: tc and tcx both while start-up
	// attachments are handed over to TCX; hook none (0) when no interface
	// is attached.
	hooks := c.ifaces.Hooks()
	attached := 0
	for h, n := range hooks {
		attached += n
		collectors.BPFProgramAttached(ch, bpffrag.ProgramInterfaces, h)
	}
	if attached == 0 {
		collectors.BPFProgramAttached(ch, bpffrag.ProgramInterfaces, loader.HookNone)
	}
	collectors.BPFHooks(ch, c.c.Hooks())
	ch <- prometheus.MustNewConstMetric(attachedDesc, prometheus.GaugeValue, float64(attached))
	ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(c.ifaces.Failures()))
	if err := c.ifaces.Err(attached); err != nil {
		return collectors.Down("attach_failed", err)
	}

	counts, err := c.c.Read()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	var stale []bpffrag.Key
	for k, v := range counts {
		l, ok := c.deps.Net.ByIndex(int(k.Ifindex))
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
	full, err := c.c.Full()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	collectors.BPFMapFull(ch, "fragments", full)
	events, err := readSNMP(c.deps.Proc)
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
	c.ifaces.Close()
	return c.c.Close()
}
