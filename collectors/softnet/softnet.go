// Package softnet exports what the kernel's per-CPU receive backlog drops
// and how often its softirq runs out of budget, from /proc/net/softnet_stat:
// a backlog at net.core.netdev_max_backlog drops packets (dropped); a
// softirq that stops with work left (time_squeeze) delays them; the flow
// limit drops the packets of one large flow. A procfs read, one line per
// CPU, takes no lock shared with the network stack.
package softnet

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/collectors"
)

// Spec is the softnet collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "softnet",
	Help:           "Per-CPU receive backlog drops, time squeezes and flow-limit drops, summed over CPUs (/proc/net/softnet_stat).",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_softnet_"},
	// Three events and the backlog (×CPUs with --softnet.per-cpu).
	Budget: func(_, _ int) int { return 4 },
	Setup:  setup,
}

var (
	eventsDesc = prometheus.NewDesc(collectors.Namespace+"_softnet_events_total",
		"Softnet events summed over CPUs (/proc/net/softnet_stat): dropped (the CPU's backlog was full, net.core.netdev_max_backlog), time_squeeze (the receive softirq ran out of budget with work left, net.core.netdev_budget), flow_limit (dropped by the flow limit).",
		[]string{"event"}, nil)
	eventsPerCPUDesc = prometheus.NewDesc(collectors.Namespace+"_softnet_events_total",
		"Softnet events per CPU (/proc/net/softnet_stat): dropped, time_squeeze, flow_limit.",
		[]string{"event", "cpu"}, nil)
	backlogDesc = prometheus.NewDesc(collectors.Namespace+"_softnet_backlog_packets",
		"Packets in the CPUs' receive backlogs at the read, summed (kernels from 5.10 report it).",
		nil, nil)
	backlogPerCPUDesc = prometheus.NewDesc(collectors.Namespace+"_softnet_backlog_packets",
		"Packets in the CPU's receive backlog at the read (kernels from 5.10 report it).",
		[]string{"cpu"}, nil)
)

func setup(app *kingpin.Application) collectors.Factory {
	perCPU := app.Flag("softnet.per-cpu", "Export softnet events per CPU (a cpu label), not only summed.").Default("false").Bool()
	return func(_ context.Context, deps collectors.Deps) (collectors.Collector, error) {
		c := &collector{deps: deps, perCPU: *perCPU}
		if _, err := c.read(); err != nil {
			return nil, collectors.Down("no_softnet_stat", err)
		}
		return c, nil
	}
}

// cpuStat is one line of softnet_stat.
type cpuStat struct {
	cpu                             int
	dropped, timeSqueeze, flowLimit uint64
	hasFlowLimit                    bool
	backlog                         uint64
	hasBacklog                      bool
}

// parse reads softnet_stat: hexadecimal columns, one line per online CPU.
// Columns 0-2 are processed, dropped, time_squeeze; 10 the flow limit's
// drops (3.11+); 11 and 12 the backlog length and the CPU's number (5.10+;
// before, the line's position, which skips offline CPUs, is all there is).
func parse(b []byte) ([]cpuStat, error) {
	var out []cpuStat
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("softnet_stat line %d has %d columns, want at least 3", i+1, len(f))
		}
		col := func(j int) (uint64, error) {
			v, err := strconv.ParseUint(f[j], 16, 64)
			if err != nil {
				return 0, fmt.Errorf("softnet_stat line %d column %d: %w", i+1, j+1, err)
			}
			return v, nil
		}
		s := cpuStat{cpu: i}
		_, err := col(0) // processed: not exported, but a line that is not numbers is not softnet_stat
		if err != nil {
			return nil, err
		}
		if s.dropped, err = col(1); err != nil {
			return nil, err
		}
		if s.timeSqueeze, err = col(2); err != nil {
			return nil, err
		}
		if len(f) > 10 {
			if s.flowLimit, err = col(10); err != nil {
				return nil, err
			}
			s.hasFlowLimit = true
		}
		if len(f) > 12 {
			if s.backlog, err = col(11); err != nil {
				return nil, err
			}
			cpu, err := col(12)
			if err != nil {
				return nil, err
			}
			s.hasBacklog, s.cpu = true, int(cpu)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("softnet_stat is empty")
	}
	return out, nil
}

type collector struct {
	deps   collectors.Deps
	perCPU bool
}

func (c *collector) read() ([]cpuStat, error) {
	b, err := c.deps.Proc.ReadFile("net/softnet_stat")
	if err != nil {
		return nil, fmt.Errorf("read softnet_stat: %w", err)
	}
	return parse(b)
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	stats, err := c.read()
	if err != nil {
		return collectors.Down("no_softnet_stat", err)
	}
	var sum cpuStat
	for _, s := range stats {
		sum.dropped += s.dropped
		sum.timeSqueeze += s.timeSqueeze
		sum.flowLimit += s.flowLimit
		sum.backlog += s.backlog
		sum.hasFlowLimit, sum.hasBacklog = s.hasFlowLimit, s.hasBacklog
		if c.perCPU {
			cpu := strconv.Itoa(s.cpu)
			events(ch, eventsPerCPUDesc, s, cpu)
			if s.hasBacklog {
				ch <- prometheus.MustNewConstMetric(backlogPerCPUDesc, prometheus.GaugeValue, float64(s.backlog), cpu)
			}
		}
	}
	if !c.perCPU {
		events(ch, eventsDesc, sum)
		if sum.hasBacklog {
			ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(sum.backlog))
		}
	}
	return nil
}

func events(ch chan<- prometheus.Metric, desc *prometheus.Desc, s cpuStat, cpu ...string) {
	ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(s.dropped), append([]string{"dropped"}, cpu...)...)
	ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(s.timeSqueeze), append([]string{"time_squeeze"}, cpu...)...)
	if s.hasFlowLimit {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(s.flowLimit), append([]string{"flow_limit"}, cpu...)...)
	}
}

func (c *collector) Close() error { return nil }
