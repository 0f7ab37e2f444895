package conntrack

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
)

// message builds a ctnetlink stats answer: the 4-byte nfgenmsg header, then
// big-endian u32 attributes.
func message(t testing.TB, attrs map[uint16]uint32) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	for typ, v := range attrs {
		ae.Uint32(typ, v)
	}
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{2, 0, 0, 0}, b...)
}

// The per-CPU statistics, decoded and named as netsonde exports them;
// attributes the kernel no longer uses, or does not have yet, are skipped.
func TestDecodeCPUStats(t *testing.T) {
	data := message(t, map[uint16]uint32{2: 7, 4: 3, 9: 1, 10: 20, 11: 5, 13: 2, 14: 9, 15: 4, 1: 99, 99: 1})
	got := map[string]uint64{}
	if err := decode(data, func(typ uint16, v uint32) {
		if name, ok := cpuStatNames[typ]; ok {
			got[name] += uint64(v)
		}
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"found": 7, "invalid": 3, "insert_failed": 1, "drop": 20, "early_drop": 5,
		"search_restart": 2, "clash_resolve": 9, "chaintoolong": 4}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func TestDecodeGlobalStats(t *testing.T) {
	var entries, max uint32
	if err := decode(message(t, map[uint16]uint32{attrGlobalEntries: 200, attrGlobalMaxEntries: 262144}), func(typ uint16, v uint32) {
		switch typ {
		case attrGlobalEntries:
			entries = v
		case attrGlobalMaxEntries:
			max = v
		}
	}); err != nil {
		t.Fatal(err)
	}
	if entries != 200 || max != 262144 {
		t.Fatalf("entries %d, max %d", entries, max)
	}
}

func TestDecodeBadInput(t *testing.T) {
	for _, b := range [][]byte{nil, {2}, {2, 0, 0}, {2, 0, 0, 0, 9, 0}} {
		if err := decode(b, func(uint16, uint32) {}); err == nil {
			t.Errorf("%v: want an error", b)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(message(f, map[uint16]uint32{2: 1, 10: 2}))
	f.Add([]byte{2, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 200})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		_ = decode(data, func(typ uint16, v uint32) { n++ })
		if n > len(data)/8 {
			t.Fatalf("%d attributes from %d bytes", n, len(data))
		}
	})
}
