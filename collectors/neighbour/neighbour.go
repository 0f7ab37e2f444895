// Package neighbour exports how full the kernel's neighbour tables (ARP
// and NDP) are and what they refused, over rtnetlink (RTM_GETNEIGHTBL, as
// `ip -s ntable` reads them): a table at gc_thresh3 refuses new entries
// ("neighbor table overflow!") and new connections to unresolved
// addresses fail silently, the classic failure of big flat pod networks.
//
// The tables and their thresholds are the kernel's, shared by every
// network namespace. The dump also holds one message per interface (its
// parameters), so it is read every --neighbour.interval in the background,
// and a scrape reads memory.
package neighbour

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/decode"
)

// Spec is the neighbour collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "neighbour",
	Help:           "Neighbour (ARP/NDP) table entries, limit (gc_thresh3), table-full refusals and resolution failures, over rtnetlink.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_neighbour_"},
	// Four per family (ipv4, ipv6).
	Budget: func(_, _ int) int { return 8 },
	Setup:  setup,
}

var (
	entriesDesc = prometheus.NewDesc(collectors.Namespace+"_neighbour_entries",
		"Entries in the kernel's neighbour table of the family (all network namespaces together, as `ip -s ntable` shows entries).",
		[]string{"family"}, nil)
	limitDesc = prometheus.NewDesc(collectors.Namespace+"_neighbour_entries_limit",
		"The table's gc_thresh3: above it the kernel refuses new neighbours (net.ipv4.neigh.default.gc_thresh3, net.ipv6.neigh.default.gc_thresh3).",
		[]string{"family"}, nil)
	fullDesc = prometheus.NewDesc(collectors.Namespace+"_neighbour_table_full_total",
		"New neighbours the kernel refused because the table was full (`ip -s ntable` table_fulls; the log's \"neighbor table overflow!\").",
		[]string{"family"}, nil)
	failedDesc = prometheus.NewDesc(collectors.Namespace+"_neighbour_resolution_failures_total",
		"Neighbours whose address resolution failed, unanswered ARP or NDP (`ip -s ntable` res_failed).",
		[]string{"family"}, nil)
)

const minInterval = 100 * time.Millisecond

func setup(app *kingpin.Application) collectors.Factory {
	every := app.Flag("neighbour.interval", "How often the neighbour tables are read (one rtnetlink dump in the background; a scrape reads the last).").
		Default("15s").Duration()
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		if *every < minInterval {
			return nil, collectors.Down("bad_flag", fmt.Errorf("--neighbour.interval %v is below the %v minimum", *every, minInterval))
		}
		return start(ctx, deps, *every, dumpTables)
	}
}

// table is one family's table as the kernel reports it.
type table struct {
	family                string
	entries, thresh3      uint64
	tableFulls, resFailed uint64
}

type collector struct {
	deps collectors.Deps
	read func() ([]table, error)
	last atomic.Pointer[[]table]
	poll *collectors.Poller
}

func start(ctx context.Context, deps collectors.Deps, every time.Duration, read func() ([]table, error)) (*collector, error) {
	c := &collector{deps: deps, read: read}
	var err error
	if c.poll, err = collectors.StartPoller(ctx, every, deps.Logger, "neighbour", "netlink_error", c.refresh); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *collector) refresh() error {
	t, err := c.read()
	if err != nil {
		return err
	}
	c.last.Store(&t)
	return nil
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	for _, t := range *c.last.Load() {
		ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(t.entries), t.family)
		ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(t.thresh3), t.family)
		ch <- prometheus.MustNewConstMetric(fullDesc, prometheus.CounterValue, float64(t.tableFulls), t.family)
		ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.CounterValue, float64(t.resFailed), t.family)
	}
	return nil
}

func (c *collector) Close() error {
	c.poll.Stop()
	return nil
}

// ndtmsg is struct ndtmsg: a family and padding.
type ndtmsg struct{ family uint8 }

func (m ndtmsg) Len() int          { return 4 }
func (m ndtmsg) Serialize() []byte { return []byte{m.family, 0, 0, 0} }

// Attributes of RTM_NEWNEIGHTBL (linux/neighbour.h).
const (
	ndtaThresh3 = 4
	ndtaConfig  = 5
	ndtaStats   = 7

	rtmGetNeighTbl = 66
	rtmNewNeighTbl = 64
)

func dumpTables() ([]table, error) {
	req := nl.NewNetlinkRequest(rtmGetNeighTbl, unix.NLM_F_DUMP)
	req.AddData(ndtmsg{family: unix.AF_UNSPEC})
	msgs, err := req.Execute(unix.NETLINK_ROUTE, rtmNewNeighTbl)
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return nil, fmt.Errorf("dump neighbour tables: %w", err)
	}
	return tablesOf(msgs)
}

// tablesOf reads a dump's tables, one per family. A dump larger than one
// netlink message (a node with hundreds of interfaces: one parameters
// message each) repeats a table's own message at the head of each part,
// counted a moment later: the last one is the newest.
func tablesOf(msgs [][]byte) ([]table, error) {
	var out []table
	seen := map[string]int{}
	for _, m := range msgs {
		t, ok, err := parseTable(m)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if i, dup := seen[t.family]; dup {
			out[i] = t
			continue
		}
		seen[t.family] = len(out)
		out = append(out, t)
	}
	return out, nil
}

// parseTable reads one RTM_NEWNEIGHTBL message. ok is false for the
// messages of one interface's parameters (NDTA_PARMS without the table's) and for
// families other than IPv4 and IPv6.
func parseTable(msg []byte) (t table, ok bool, err error) {
	if len(msg) < 4 {
		return t, false, fmt.Errorf("neighbour table message of %d bytes", len(msg))
	}
	if t.family = decode.FamilyName(uint16(msg[0])); t.family == "other" {
		return t, false, nil
	}
	var thresh, config, stats bool
	err = decode.NetlinkAttrs(msg[4:], func(typ uint16, v []byte) {
		switch typ {
		case ndtaThresh3:
			if len(v) >= 4 {
				t.thresh3, thresh = uint64(binary.NativeEndian.Uint32(v)), true
			}
		case ndtaConfig:
			// struct ndt_config: key_len, entry_size (u16), entries (u32), ...
			if len(v) >= 8 {
				t.entries, config = uint64(binary.NativeEndian.Uint32(v[4:])), true
			}
		case ndtaStats:
			// struct ndt_stats: allocs, destroys, hash_grows, res_failed,
			// lookups, hits, rcv_probes_mcast, rcv_probes_ucast,
			// periodic_gc_runs, forced_gc_runs, table_fulls (u64).
			if len(v) >= 88 {
				t.resFailed = binary.NativeEndian.Uint64(v[24:])
				t.tableFulls = binary.NativeEndian.Uint64(v[80:])
				stats = true
			}
		}
	})
	if err != nil {
		return t, false, fmt.Errorf("neighbour table: %w", err)
	}
	if !thresh && !config && !stats {
		// One interface's parameters (NDTA_NAME and NDTA_PARMS
		// only): not the table.
		return t, false, nil
	}
	if !thresh || !config || !stats {
		return t, false, fmt.Errorf("%s neighbour table without thresholds, configuration or statistics", t.family)
	}
	return t, true, nil
}
