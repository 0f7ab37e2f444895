package neighbour

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/decode"
	"github.com/netsonde/netsonde/internal/golden"
)

func attr(typ uint16, v []byte) []byte { return decode.AppendNetlinkAttr(nil, typ, v) }

// tableMsg is an RTM_NEWNEIGHTBL body as neightbl_fill_info writes it:
// name, thresholds, config, the default parameters, statistics.
func tableMsg(family uint8, entries, thresh3 uint32, resFailed, fulls uint64) []byte {
	b := []byte{family, 0, 0, 0}
	b = append(b, attr(1, []byte("arp_cache\x00"))...)
	for i, v := range []uint32{128, 512, thresh3} {
		b = append(b, attr(uint16(2+i), binary.NativeEndian.AppendUint32(nil, v))...)
	}
	cfg := binary.NativeEndian.AppendUint16(nil, 4)
	cfg = binary.NativeEndian.AppendUint16(cfg, 336)
	cfg = binary.NativeEndian.AppendUint32(cfg, entries)
	cfg = append(cfg, make([]byte, 24)...)
	b = append(b, attr(5, cfg)...)
	b = append(b, attr(6|unix.NLA_F_NESTED, attr(2, binary.NativeEndian.AppendUint32(nil, 1)))...)
	var st []byte
	for i := range 11 {
		v := uint64(1000 + i)
		switch i {
		case 3:
			v = resFailed
		case 10:
			v = fulls
		}
		st = binary.NativeEndian.AppendUint64(st, v)
	}
	return append(b, attr(7, st)...)
}

// parmsMsg is one interface's parameters, which the same dump carries.
func parmsMsg(family uint8) []byte {
	b := []byte{family, 0, 0, 0}
	b = append(b, attr(1, []byte("arp_cache\x00"))...)
	return append(b, attr(6|unix.NLA_F_NESTED, attr(1, binary.NativeEndian.AppendUint32(nil, 7)))...)
}

func TestParseTable(t *testing.T) {
	tb, ok, err := parseTable(tableMsg(unix.AF_INET, 900, 1024, 7, 42))
	if err != nil || !ok || tb != (table{family: "ipv4", entries: 900, thresh3: 1024, resFailed: 7, tableFulls: 42}) {
		t.Fatalf("parsed %+v, %v, %v", tb, ok, err)
	}
	if _, ok, err := parseTable(parmsMsg(unix.AF_INET6)); ok || err != nil {
		t.Fatalf("an interface's parameters: ok %v, err %v", ok, err)
	}
	if _, ok, err := parseTable(tableMsg(12, 1, 2, 3, 4)); ok || err != nil { // DECnet, before 6.1
		t.Fatalf("another family: ok %v, err %v", ok, err)
	}
	if _, _, err := parseTable(tableMsg(unix.AF_INET, 1, 2, 3, 4)[:40]); err == nil {
		t.Fatal("a cut message parsed")
	}
}

// A dump in parts repeats each table's message at the head of each part
// (TestSeriesBudget's 1,000 interfaces found it): one table per family,
// the newest.
func TestTablesOfRepeatedParts(t *testing.T) {
	msgs := [][]byte{
		tableMsg(unix.AF_INET, 4, 1024, 0, 85), parmsMsg(unix.AF_INET),
		tableMsg(unix.AF_INET, 5, 1024, 0, 86), parmsMsg(unix.AF_INET),
		tableMsg(unix.AF_INET6, 921, 1024, 2, 0), parmsMsg(unix.AF_INET6),
		tableMsg(unix.AF_INET6, 936, 1024, 2, 0),
	}
	tables, err := tablesOf(msgs)
	if err != nil {
		t.Fatal(err)
	}
	want := []table{
		{family: "ipv4", entries: 5, thresh3: 1024, tableFulls: 86},
		{family: "ipv6", entries: 936, thresh3: 1024, resFailed: 2},
	}
	if len(tables) != 2 || tables[0] != want[0] || tables[1] != want[1] {
		t.Fatalf("tables %+v, want %+v", tables, want)
	}
}

func FuzzParseTable(f *testing.F) {
	f.Add(tableMsg(unix.AF_INET, 900, 1024, 7, 42))
	f.Add(parmsMsg(unix.AF_INET6))
	f.Fuzz(func(t *testing.T, b []byte) {
		if tb, ok, err := parseTable(b); ok && (err != nil || tb.family == "") {
			t.Fatalf("parsed %+v, %v", tb, err)
		}
	})
}

// TestGoldenMetrics: an IPv4 table near its limit that refused 42, and an
// IPv6 table with room.
func TestGoldenMetrics(t *testing.T) {
	c := &collector{}
	tables := []table{
		{family: "ipv4", entries: 1000, thresh3: 1024, tableFulls: 42, resFailed: 7},
		{family: "ipv6", entries: 35, thresh3: 1024},
	}
	c.last.Store(&tables)
	golden.Check(t, c)
}
