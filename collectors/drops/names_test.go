package drops

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func enum(name string, vals ...any) *btf.Enum {
	e := &btf.Enum{Name: name}
	for i := 0; i < len(vals); i += 2 {
		e.Values = append(e.Values, btf.EnumValue{Name: vals[i].(string), Value: uint64(vals[i+1].(int))})
	}
	return e
}

// A 6.1-shaped enum: no subsystems; the not-drops and MAX are left out.
func TestNamesWithoutSubsystems(t *testing.T) {
	core := enum("skb_drop_reason", "SKB_NOT_DROPPED_YET", 0, "SKB_CONSUMED", 1,
		"SKB_DROP_REASON_NOT_SPECIFIED", 2, "SKB_DROP_REASON_NO_SOCKET", 3, "SKB_DROP_REASON_MAX", 4)
	got := namesFromEnums(core, nil, nil)
	if len(got) != 2 || got[2] != "NOT_SPECIFIED" || got[3] != "NO_SOCKET" {
		t.Fatalf("got %v", got)
	}
	if got.name(4) != "4" {
		t.Fatalf("MAX should be unnamed, got %q", got.name(4))
	}
}

// A 6.4+-shaped set: mac80211's enum carries its subsystem id (1) in the
// high 16 bits and is taken; an unrelated enum, and one mixing ids, are not.
func TestNamesWithSubsystems(t *testing.T) {
	core := enum("skb_drop_reason", "SKB_DROP_REASON_NO_SOCKET", 3, "SKB_DROP_REASON_SUBSYS_MASK", 0xffff0000)
	subsys := enum("skb_drop_reason_subsys", "SKB_DROP_REASON_SUBSYS_CORE", 0,
		"SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1, "SKB_DROP_REASON_SUBSYS_NUM", 2)
	mac := enum("mac80211_drop_reason", "RX_DROP_U_MIC_FAIL", 0x10001, "RX_DROP_U_REPLAY", 0x10002)
	unrelated := enum("other", "A", 0x10001, "B", 7)
	foreign := enum("foreign", "X", 0x50001)
	got := namesFromEnums(core, subsys, []*btf.Enum{unrelated, mac, foreign})
	want := reasonNames{3: "NO_SOCKET", 0x10001: "RX_DROP_U_MIC_FAIL", 0x10002: "RX_DROP_U_REPLAY"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%#x: %q, want %q", k, got[k], v)
		}
	}
}

// Whatever the kernel's enums hold, naming neither panics nor names a
// value outside 32 bits.
func FuzzNamesFromEnums(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0}, uint8(3))
	f.Fuzz(func(t *testing.T, raw []byte, split uint8) {
		var vals []uint64
		for len(raw) >= 8 {
			vals = append(vals, binary.LittleEndian.Uint64(raw))
			raw = raw[8:]
		}
		core, other := &btf.Enum{Name: "skb_drop_reason"}, &btf.Enum{Name: "x"}
		subsys := &btf.Enum{Name: "skb_drop_reason_subsys", Values: []btf.EnumValue{{Name: "S", Value: 1}}}
		for i, v := range vals {
			name := "SKB_DROP_REASON_R"
			if i == int(split) {
				name = "SKB_DROP_REASON_SUBSYS_MASK"
			}
			core.Values = append(core.Values, btf.EnumValue{Name: name, Value: v})
			other.Values = append(other.Values, btf.EnumValue{Name: "O", Value: v})
		}
		_ = namesFromEnums(core, subsys, []*btf.Enum{other})
	})
}
