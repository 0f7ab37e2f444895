package netdev

// The two rtnetlink dumps the collector makes in the background, and their
// parsers. The parsers read only the attributes exported (a link's name,
// IFLA_STATS64 and IFLA_CARRIER_CHANGES; a qdisc's kind and TCA_STATS2):
// netlink's full LinkDeserialize allocates a typed Link per message, which
// at 1,000 interfaces every few seconds is most of the collector's cost.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/decode"
)

// Offsets (in uint64s) of the counters of struct rtnl_link_stats64 that
// are exported. The struct only grows (rx_nohandler in 4.6,
// rx_otherhost_dropped in 6.0): a counter past the attribute's end is
// absent, never read.
const (
	statRxErrors         = 4
	statTxErrors         = 5
	statRxDropped        = 6
	statTxDropped        = 7
	statRxLengthErrors   = 10
	statRxOverErrors     = 11
	statRxCRCErrors      = 12
	statRxFrameErrors    = 13
	statRxFIFOErrors     = 14
	statRxMissedErrors   = 15
	statTxAbortedErrors  = 16
	statTxCarrierErrors  = 17
	statTxFIFOErrors     = 18
	statTxHeartbeatErrs  = 19
	statTxWindowErrors   = 20
	statRxNoHandler      = 23
	statRxOtherhostDrops = 24
	numStats             = 25
)

// errorKind is one kind label of netsonde_interface_errors_total: the
// kernel's field, its direction and the kind's name.
type errorKind struct {
	stat      int
	direction string
	kind      string
}

// errorKinds are the error counters, named as `ip -s -s link` names them
// (rx_missed_errors is kind "missed", direction "rx").
var errorKinds = []errorKind{
	{statRxLengthErrors, "rx", "length"},
	{statRxOverErrors, "rx", "over"},
	{statRxCRCErrors, "rx", "crc"},
	{statRxFrameErrors, "rx", "frame"},
	{statRxFIFOErrors, "rx", "fifo"},
	{statRxMissedErrors, "rx", "missed"},
	{statTxAbortedErrors, "tx", "aborted"},
	{statTxCarrierErrors, "tx", "carrier"},
	{statTxFIFOErrors, "tx", "fifo"},
	{statTxHeartbeatErrs, "tx", "heartbeat"},
	{statTxWindowErrors, "tx", "window"},
}

// linkStats is one interface's counters from a link dump.
type linkStats struct {
	index int
	name  string
	// stats holds rtnl_link_stats64's first n counters (n ≤ numStats).
	stats [numStats]uint64
	n     int
	// carrierChanges is IFLA_CARRIER_CHANGES (Linux 4.15+; hasCarrier
	// false before).
	carrierChanges uint32
	hasCarrier     bool
}

// stat is counter i, and whether this kernel reports it.
func (l *linkStats) stat(i int) (uint64, bool) {
	if i >= l.n {
		return 0, false
	}
	return l.stats[i], true
}

// parseLink reads one RTM_NEWLINK message (after the netlink header).
func parseLink(msg []byte) (linkStats, error) {
	var l linkStats
	if len(msg) < unix.SizeofIfInfomsg {
		return l, fmt.Errorf("link message of %d bytes, shorter than ifinfomsg", len(msg))
	}
	l.index = int(int32(binary.NativeEndian.Uint32(msg[4:8])))
	err := decode.NetlinkAttrs(msg[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
		switch typ {
		case unix.IFLA_IFNAME:
			l.name = cString(v)
		case unix.IFLA_STATS64:
			l.n = min(len(v)/8, numStats)
			for i := range l.n {
				l.stats[i] = binary.NativeEndian.Uint64(v[8*i:])
			}
		case unix.IFLA_CARRIER_CHANGES:
			if len(v) >= 4 {
				l.carrierChanges, l.hasCarrier = binary.NativeEndian.Uint32(v), true
			}
		}
	})
	if err != nil {
		return l, fmt.Errorf("link %d attributes: %w", l.index, err)
	}
	if l.name == "" {
		return l, fmt.Errorf("link %d has no name", l.index)
	}
	return l, nil
}

// qdiscStats is one root qdisc's statistics from a qdisc dump.
type qdiscStats struct {
	index                       int
	kind                        string
	drops, overlimits, requeues uint32
	// qlen is the packets queued now (gnet_stats_queue.qlen).
	qlen uint32
}

// tcHRoot is TC_H_ROOT, the parent of a root qdisc.
const tcHRoot = 0xFFFFFFFF

// parseQdisc reads one RTM_NEWQDISC message; root is false for a qdisc
// that is not its interface's root (its statistics are in the root's).
func parseQdisc(msg []byte) (q qdiscStats, root bool, err error) {
	if len(msg) < nl.SizeofTcMsg {
		return q, false, fmt.Errorf("qdisc message of %d bytes, shorter than tcmsg", len(msg))
	}
	q.index = int(int32(binary.NativeEndian.Uint32(msg[4:8])))
	if binary.NativeEndian.Uint32(msg[12:16]) != tcHRoot {
		return q, false, nil
	}
	found := false
	var nestedErr error
	err = decode.NetlinkAttrs(msg[nl.SizeofTcMsg:], func(typ uint16, v []byte) {
		switch typ {
		case nl.TCA_KIND:
			q.kind = cString(v)
		case nl.TCA_STATS2:
			nestedErr = decode.NetlinkAttrs(v, func(typ uint16, v []byte) {
				// struct gnet_stats_queue: qlen (packets), backlog (bytes),
				// drops, requeues, overlimits.
				if typ == nl.TCA_STATS_QUEUE && len(v) >= 20 {
					q.qlen = binary.NativeEndian.Uint32(v[0:])
					q.drops = binary.NativeEndian.Uint32(v[8:])
					q.requeues = binary.NativeEndian.Uint32(v[12:])
					q.overlimits = binary.NativeEndian.Uint32(v[16:])
					found = true
				}
			})
		}
	})
	if err = errors.Join(err, nestedErr); err != nil {
		return q, true, fmt.Errorf("qdisc of link %d attributes: %w", q.index, err)
	}
	if q.kind == "" || !found {
		return q, true, fmt.Errorf("qdisc of link %d without kind or queue statistics", q.index)
	}
	return q, true, nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// dump makes one rtnetlink dump request and hands each message to fn as
// it arrives (in the receive buffer: fn copies what it keeps), so a round
// holds no dump in memory. A dump the kernel marked interrupted (it raced
// a change) is used as it is: the next round reads it again.
func dump(proto uint16, reply uint16, hdr nl.NetlinkRequestData, fn func(msg []byte)) error {
	req := nl.NewNetlinkRequest(int(proto), unix.NLM_F_DUMP)
	req.AddData(hdr)
	err := req.ExecuteIter(unix.NETLINK_ROUTE, reply, func(msg []byte) bool {
		fn(msg)
		return true
	})
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return err
	}
	return nil
}

// dumpLinks reads every link's counters.
func dumpLinks() ([]linkStats, []error, error) {
	var out []linkStats
	var bad []error
	err := dump(unix.RTM_GETLINK, unix.RTM_NEWLINK, nl.NewIfInfomsg(unix.AF_UNSPEC), func(m []byte) {
		l, err := parseLink(m)
		if err != nil {
			bad = append(bad, err)
			return
		}
		out = append(out, l)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dump links: %w", err)
	}
	return out, bad, nil
}

// dumpQdiscs reads every root qdisc's statistics.
func dumpQdiscs() ([]qdiscStats, []error, error) {
	var out []qdiscStats
	var bad []error
	err := dump(unix.RTM_GETQDISC, unix.RTM_NEWQDISC, &nl.TcMsg{Family: unix.AF_UNSPEC}, func(m []byte) {
		q, root, err := parseQdisc(m)
		switch {
		case err != nil:
			bad = append(bad, err)
		case root && q.kind != "noqueue":
			// noqueue (veths, lo) has nothing to count: not kept.
			out = append(out, q)
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dump qdiscs: %w", err)
	}
	return out, bad, nil
}
