package netdev

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/decode"
	"github.com/netsonde/netsonde/internal/golden"
)

func attr(typ uint16, v []byte) []byte { return decode.AppendNetlinkAttr(nil, typ, v) }

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// linkMsg is an RTM_NEWLINK body: ifinfomsg, name, the first n counters
// of stats64 (counter i = base+i) and carrier_changes (if ≥ 0).
func linkMsg(index int32, name string, n int, base uint64, carrier int64) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	b = append(b, attr(unix.IFLA_IFNAME, append([]byte(name), 0))...)
	var st []byte
	for i := range n {
		st = binary.NativeEndian.AppendUint64(st, base+uint64(i))
	}
	if n > 0 {
		b = append(b, attr(unix.IFLA_STATS64, st)...)
	}
	if carrier >= 0 {
		b = append(b, attr(unix.IFLA_CARRIER_CHANGES, u32(uint32(carrier)))...)
	}
	return b
}

// qdiscMsg is an RTM_NEWQDISC body for ifindex's qdisc under parent.
func qdiscMsg(index int32, parent uint32, kind string, qlen, drops, requeues, overlimits uint32) []byte {
	b := make([]byte, 20)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[12:], parent)
	b = append(b, attr(1, append([]byte(kind), 0))...) // TCA_KIND
	var q []byte
	for _, v := range []uint32{qlen, 4242, drops, requeues, overlimits} {
		q = append(q, u32(v)...)
	}
	b = append(b, attr(7|unix.NLA_F_NESTED, attr(3, q))...) // TCA_STATS2{TCA_STATS_QUEUE}
	return b
}

func TestParseLink(t *testing.T) {
	// A 6.0+ kernel: 25 counters (rx_otherhost_dropped); tx_dropped is 7+100.
	l, err := parseLink(linkMsg(7, "eth0", 25, 100, 3))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := l.stat(statTxDropped); l.index != 7 || l.name != "eth0" || v != 107 || !l.hasCarrier || l.carrierChanges != 3 {
		t.Fatalf("parsed %+v", l)
	}
	// A 4.x kernel: 23 counters, no rx_nohandler; no carrier_changes.
	l, err = parseLink(linkMsg(8, "eth1", 23, 0, -1))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.stat(statRxNoHandler); ok || l.hasCarrier {
		t.Fatalf("counters the kernel did not send: %+v", l)
	}
	if _, err := parseLink(linkMsg(9, "", 25, 0, 0)); err == nil {
		t.Fatal("a link without a name parsed")
	}
	if _, err := parseLink([]byte{1, 2, 3}); err == nil {
		t.Fatal("a short message parsed")
	}
}

func TestParseQdisc(t *testing.T) {
	q, root, err := parseQdisc(qdiscMsg(3, tcHRoot, "tbf", 2, 995, 1, 1005))
	if err != nil || !root {
		t.Fatal(root, err)
	}
	if q != (qdiscStats{index: 3, kind: "tbf", drops: 995, overlimits: 1005, requeues: 1, qlen: 2}) {
		t.Fatalf("parsed %+v", q)
	}
	if _, root, err := parseQdisc(qdiscMsg(3, 0x10001, "pfifo", 0, 5, 0, 0)); root || err != nil {
		t.Fatalf("a child qdisc: root %v, err %v", root, err)
	}
}

func FuzzParseLink(f *testing.F) {
	f.Add(linkMsg(7, "eth0", 25, 100, 3))
	f.Add(linkMsg(8, "x", 3, 0, -1))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLink(b)
		if err == nil && (l.name == "" || l.n > numStats) {
			t.Fatalf("parsed %+v", l)
		}
	})
}

func FuzzParseQdisc(f *testing.F) {
	f.Add(qdiscMsg(3, tcHRoot, "tbf", 2, 995, 1, 1005))
	f.Add(qdiscMsg(3, 1, "fq", 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, root, err := parseQdisc(b)
		if err == nil && root && q.kind == "" {
			t.Fatalf("parsed %+v", q)
		}
	})
}

// fixed serves fixed dumps.
type fixed struct {
	l    []linkStats
	q    []qdiscStats
	bad  []error
	qerr error
}

func (f fixed) links() ([]linkStats, []error, error)   { return f.l, f.bad, nil }
func (f fixed) qdiscs() ([]qdiscStats, []error, error) { return f.q, nil, f.qerr }

func mustLink(t *testing.T, b []byte) linkStats {
	l, err := parseLink(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestGoldenMetrics: the fixture node, its pod's veth dropping and
// flapping (labelled with the pod), eth0 with errors and an mq root, lo
// quiet (no series), the other veth's noqueue (no series), a qdisc of an
// interface gone between the two dumps (none), and one unreadable link.
func TestGoldenMetrics(t *testing.T) {
	view := golden.Node()
	quiet := mustLink(t, linkMsg(golden.IfLo, "lo", 25, 0, 0))
	quiet.stats = [numStats]uint64{}
	eth0 := mustLink(t, linkMsg(golden.IfEth0, "eth0", 25, 0, 4))
	eth0.stats = [numStats]uint64{}
	eth0.stats[statRxDropped], eth0.stats[statRxMissedErrors], eth0.stats[statRxCRCErrors] = 1234, 1200, 2
	pod := mustLink(t, linkMsg(golden.IfPodVeth, "veth1a2b3c", 25, 0, 12))
	pod.stats = [numStats]uint64{}
	pod.stats[statTxDropped] = 100
	other := mustLink(t, linkMsg(golden.IfOtherVeth, "veth4d5e6f", 25, 0, 2))
	other.stats = [numStats]uint64{}
	src := fixed{
		l:   []linkStats{quiet, eth0, pod, other},
		bad: []error{errors.New("link 99 has no name")},
		q: []qdiscStats{
			{index: golden.IfEth0, kind: "mq", drops: 17, overlimits: 0, requeues: 3, qlen: 1},
			{index: golden.IfOtherVeth, kind: "noqueue"},
			{index: 99, kind: "fq_codel", drops: 5},
		},
	}
	c := newCollector(collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view}, src)
	if err := c.refresh(); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, c)
}
