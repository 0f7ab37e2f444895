// Package sockets exports what the kernel counts of sockets that a pod
// cannot see on the wire: accept queues overflowing, receive buffers
// full, TCP under socket-memory pressure. Each network namespace has its
// own counters (/proc/<pid>/net/netstat and snmp, read by nstat); the host
// view reads them inside every namespace in its background refresh, so a
// scrape walks nothing. Socket memory against tcp_mem and udp_mem is
// node-wide and read at scrape time (three small files).
package sockets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/series"
	"github.com/netsonde/netsonde/internal/procnet"
)

// Counters are the kernel counters exported per namespace, as nstat names
// them: the accept queue (ListenOverflows, ListenDrops, ReqQFullDrop),
// receive paths dropping for want of buffer (BacklogDrop, RcvQDrop,
// ZeroWindowDrop, OFODrop), memory pressure and the aborts it and timeouts
// cause, and UDP's buffer errors for both families.
var Counters = []string{
	"TcpExtListenOverflows",
	"TcpExtListenDrops",
	"TcpExtTCPReqQFullDrop",
	"TcpExtTCPBacklogDrop",
	"TcpExtTCPRcvQDrop",
	"TcpExtTCPZeroWindowDrop",
	"TcpExtTCPOFODrop",
	"TcpExtTCPMemoryPressures",
	"TcpExtTCPAbortOnMemory",
	"TcpExtTCPAbortOnTimeout",
	"UdpRcvbufErrors",
	"UdpSndbufErrors",
	"UdpInErrors",
	"Udp6RcvbufErrors",
	"Udp6SndbufErrors",
	"Udp6InErrors",
}

// Spec is the sockets collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "sockets",
	Help:           "Socket errors per pod from each network namespace's own netstat/snmp (accept queue overflows, receive buffer errors, memory pressure), and socket memory against tcp_mem/udp_mem.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_socket_"},
	// Every counter, once non-zero, in every pod's namespace and the
	// host's; memory in pages for two protocols, three limits each.
	Budget: func(_, p int) int { return len(Counters)*(p+1) + 2 + 6 },
	Setup:  setup,
}

var (
	errorsDesc = prometheus.NewDesc(collectors.Namespace+"_socket_errors_total",
		"Socket errors the kernel counted in the pod's network namespace (the host's: namespace and pod empty), by the counter's name as nstat prints it; a pod's counter is exported once it is non-zero (the host's always). Pods' values are as of the host view's last read of the namespace (--hostnet.refresh-interval).",
		[]string{"namespace", "pod", "counter"}, nil)
	memDesc = prometheus.NewDesc(collectors.Namespace+"_socket_memory_pages",
		"Pages charged to the protocol's sockets on the node (/proc/net/sockstat mem).",
		[]string{"protocol"}, nil)
	limitDesc = prometheus.NewDesc(collectors.Namespace+"_socket_memory_limit_pages",
		"The protocol's socket memory thresholds (net.ipv4.tcp_mem, udp_mem): min (no regulation below), pressure (TCP moderates buffers above), max (allocations fail).",
		[]string{"protocol", "level"}, nil)
)

func setup(_ *kingpin.Application) collectors.Factory {
	return start
}

type collector struct {
	deps collectors.Deps
	// series keeps the rendered label pairs of every pod's counters from
	// one scrape to the next (110 pods × 16 counters at worst); a deleted
	// pod's go at the next Sweep.
	series *series.Cache[seriesKey]
	// want is Counters as a set: only those are parsed out of the files.
	want procnet.Want
}

type seriesKey struct{ namespace, pod, counter string }

func start(_ context.Context, deps collectors.Deps) (collectors.Collector, error) {
	if deps.Proc == nil {
		return nil, collectors.Down("no_procfs", errors.New("no procfs"))
	}
	if _, err := deps.Proc.ReadFile("net/netstat"); err != nil {
		return nil, collectors.Down("no_procfs", fmt.Errorf("read net/netstat: %w", err))
	}
	if deps.Counters != nil {
		deps.Counters.WantCounters(Counters...)
	}
	want := procnet.Want{}
	for _, n := range Counters {
		want[n] = true
	}
	return &collector{deps: deps, series: series.NewCache[seriesKey](errorsDesc, prometheus.CounterValue), want: want}, nil
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	// The agent's own namespace (the node's, for a hostNetwork agent),
	// read now: three small files.
	files := map[string][]byte{}
	for _, name := range procnet.Files {
		b, err := c.deps.Proc.ReadFile("net/" + name)
		if errors.Is(err, fs.ErrNotExist) && name == "snmp6" {
			continue
		}
		if err != nil {
			return collectors.Down("read", err)
		}
		files[name] = b
	}
	host, err := procnet.ParseWanted(files, c.want)
	if err != nil {
		return collectors.Down("parse", err)
	}
	// The host's are all sent, zeros too: 16 series per node, and the
	// dashboard and the alerts always have something to read.
	c.send(ch, "", "", host, true)
	if c.deps.Net != nil {
		snap := c.deps.Net.Snapshot()
		seen := map[[2]string]bool{}
		for cookie, n := range snap.Namespaces() {
			pod, ok := snap.ByNetns(cookie)
			if !ok {
				continue // no pod's: not the host's either
			}
			k := [2]string{pod.Namespace, pod.Name}
			if seen[k] {
				continue // a pod has one namespace; never send a label set twice
			}
			seen[k] = true
			c.send(ch, pod.Namespace, pod.Name, n.Counters, false)
		}
	}
	c.series.Sweep()
	return c.memory(ch)
}

// send exports the wanted counters the kernel has, only the non-zero ones
// unless zeros: a quiet pod costs no series.
func (c *collector) send(ch chan<- prometheus.Metric, namespace, pod string, counters procnet.Counters, zeros bool) {
	for _, name := range Counters {
		if v, ok := counters[name]; ok && (v > 0 || zeros) {
			ch <- c.series.Metric(seriesKey{namespace, pod, name}, float64(v), func() []string { return []string{namespace, pod, name} })
		}
	}
}

// memory sends socket memory and its limits. tcp_mem and udp_mem are
// global sysctls the kernel shows in the initial network namespace only:
// an agent in another (not hostNetwork) sends no limits, not an error.
func (c *collector) memory(ch chan<- prometheus.Metric) error {
	b, err := c.deps.Proc.ReadFile("net/sockstat")
	if err != nil {
		return collectors.Down("read", err)
	}
	s, err := procnet.ParseSockstat(b)
	if err != nil {
		return collectors.Down("parse", fmt.Errorf("net/sockstat: %w", err))
	}
	if s.HasTCPPages {
		ch <- prometheus.MustNewConstMetric(memDesc, prometheus.GaugeValue, float64(s.TCPPages), "tcp")
	}
	if s.HasUDPPages {
		ch <- prometheus.MustNewConstMetric(memDesc, prometheus.GaugeValue, float64(s.UDPPages), "udp")
	}
	for _, proto := range []string{"tcp", "udp"} {
		b, err := c.deps.Proc.ReadFile("sys/net/ipv4/" + proto + "_mem")
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return collectors.Down("read", err)
		}
		l, err := procnet.ParseMemLimits(bytes.TrimSpace(b))
		if err != nil {
			return collectors.Down("parse", fmt.Errorf("%s_mem: %w", proto, err))
		}
		ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(l.Min), proto, "min")
		ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(l.Pressure), proto, "pressure")
		ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(l.Max), proto, "max")
	}
	return nil
}

func (c *collector) Close() error { return nil }
