package conntrack

import (
	"encoding/binary"
	"fmt"

	ct "github.com/florianl/go-conntrack"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctnetlink message types and attributes (include/uapi/linux/netfilter/
// nfnetlink_conntrack.h). go-conntrack v0.4.0 has no global-stats request
// and its per-CPU decoder stops at search_restart, so both are sent over
// the library's own connection and decoded here.
const (
	msgGetStatsCPU = 4 // IPCTNL_MSG_CT_GET_STATS_CPU
	msgGetStats    = 5 // IPCTNL_MSG_CT_GET_STATS

	attrGlobalEntries    = 1 // CTA_STATS_GLOBAL_ENTRIES
	attrGlobalMaxEntries = 2 // CTA_STATS_GLOBAL_MAX_ENTRIES
)

// cpuStatNames names enum ctattr_stats_cpu. Attributes marked "no longer
// used" in the kernel header are left out; an attribute a newer kernel adds
// is ignored until it is named here.
var cpuStatNames = map[uint16]string{
	2:  "found",
	4:  "invalid",
	5:  "ignore",
	8:  "insert",
	9:  "insert_failed",
	10: "drop",
	11: "early_drop",
	12: "error",
	13: "search_restart",
	14: "clash_resolve", // 5.13
	15: "chaintoolong",  // 5.16
}

// stats is one reading of the table's counters.
type stats struct {
	entries, limit uint64
	hasLimit       bool
	// events sums each per-CPU statistic over CPUs, by name.
	events map[string]uint64
}

func request(msgType uint16, flags netlink.HeaderFlags) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | msgType),
			Flags: netlink.Request | flags,
		},
		// struct nfgenmsg: family, version, res_id
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
}

// readStats asks the kernel for the global and per-CPU statistics of the
// connection's network namespace: two small requests whose answers do not
// grow with the table.
func readStats(nfct *ct.Nfct) (stats, error) {
	s := stats{events: map[string]uint64{}}
	// The kernel answers GET_STATS with one message flagged multi-part and
	// no NLMSG_DONE after it, which go-conntrack's netlink connection waits
	// for forever; so this one request goes over a socket of our own.
	msgs, err := getOnce(msgGetStats)
	if err != nil {
		return s, fmt.Errorf("ctnetlink get stats: %w", err)
	}
	for _, m := range msgs {
		if err := decode(m, func(typ uint16, v uint32) {
			switch typ {
			case attrGlobalEntries:
				s.entries = uint64(v)
			case attrGlobalMaxEntries:
				s.limit, s.hasLimit = uint64(v), true
			}
		}); err != nil {
			return s, fmt.Errorf("decode stats: %w", err)
		}
	}
	cpus, err := nfct.Con.Execute(request(msgGetStatsCPU, netlink.Dump))
	if err != nil {
		return s, fmt.Errorf("ctnetlink get per-CPU stats: %w", err)
	}
	for _, m := range cpus {
		if err := decode(m.Data, func(typ uint16, v uint32) {
			if name, ok := cpuStatNames[typ]; ok {
				s.events[name] += uint64(v)
			}
		}); err != nil {
			return s, fmt.Errorf("decode per-CPU stats: %w", err)
		}
	}
	return s, nil
}

// decode walks the u32 attributes after the 4-byte nfgenmsg header.
func decode(data []byte, fn func(typ uint16, v uint32)) error {
	if len(data) < 4 {
		return fmt.Errorf("short message (%d bytes)", len(data))
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if len(ad.Bytes()) == 4 {
			fn(ad.Type(), ad.Uint32())
		}
	}
	return ad.Err()
}
