package dropreason

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func enum(name string, vals ...any) *btf.Enum {
	e := &btf.Enum{Name: name, Size: 4}
	for i := 0; i < len(vals); i += 2 {
		e.Values = append(e.Values, btf.EnumValue{Name: vals[i].(string), Value: uint64(vals[i+1].(int))})
	}
	return e
}

// btfDir writes the enums as a vmlinux BTF file, as /sys/kernel/btf has it.
func btfDir(t testing.TB, types ...btf.Type) string {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vmlinux"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A 6.1-shaped kernel: no subsystems; the not-drops and MAX are left out,
// and types other than enums are walked past.
func TestNamesWithoutSubsystems(t *testing.T) {
	core := enum("skb_drop_reason", "SKB_NOT_DROPPED_YET", 0, "SKB_CONSUMED", 1,
		"SKB_DROP_REASON_NOT_SPECIFIED", 2, "SKB_DROP_REASON_NO_SOCKET", 3, "SKB_DROP_REASON_MAX", 4)
	u32 := &btf.Int{Name: "u32", Size: 4}
	st := &btf.Struct{Name: "sk_buff", Size: 8, Members: []btf.Member{{Name: "len", Type: u32}, {Name: "data_len", Type: u32, Offset: 32}}}
	got, err := Load(btfDir(t, u32, st, core))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[2] != "NOT_SPECIFIED" || got[3] != "NO_SOCKET" {
		t.Fatalf("got %v", got)
	}
	if got.Name(4) != "4" {
		t.Fatalf("MAX should be unnamed, got %q", got.Name(4))
	}
}

// A 6.4+-shaped kernel: mac80211's enum carries its subsystem id (1) in
// the high 16 bits and is taken; an enum mixing ids and one of an unknown
// subsystem are not.
func TestNamesWithSubsystems(t *testing.T) {
	core := enum("skb_drop_reason", "SKB_DROP_REASON_NO_SOCKET", 3, "SKB_DROP_REASON_SUBSYS_MASK", 0xffff0000)
	subsys := enum("skb_drop_reason_subsys", "SKB_DROP_REASON_SUBSYS_CORE", 0,
		"SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1, "SKB_DROP_REASON_SUBSYS_NUM", 2)
	mac := enum("mac80211_drop_reason", "RX_DROP_U_MIC_FAIL", 0x10001, "RX_DROP_U_REPLAY", 0x10002)
	mixed := enum("other", "A", 0x10001, "B", 7)
	foreign := enum("foreign", "X", 0x50001)
	got, err := Load(btfDir(t, core, subsys, mixed, mac, foreign))
	if err != nil {
		t.Fatal(err)
	}
	want := Names{3: "NO_SOCKET", 0x10001: "RX_DROP_U_MIC_FAIL", 0x10002: "RX_DROP_U_REPLAY"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%#x: %q, want %q", k, got[k], v)
		}
	}
}

func TestRawBTFBadInput(t *testing.T) {
	for _, raw := range [][]byte{nil, make([]byte, 23), make([]byte, 24),
		{0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := parseRawBTF(raw, "x", nil); err == nil {
			t.Errorf("% x: want an error", raw)
		}
	}
}

// Whatever the file holds, the enum walk returns names or an error; it
// never panics or reads out of bounds.
func FuzzRawBTF(f *testing.F) {
	b, err := btf.NewBuilder([]btf.Type{
		enum("skb_drop_reason", "SKB_DROP_REASON_NO_SOCKET", 3, "SKB_DROP_REASON_SUBSYS_MASK", 0xffff0000),
		&btf.Int{Name: "u32", Size: 4},
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := parseRawBTF(raw, "fuzz", nil)
		if err != nil {
			return
		}
		_ = r.enums(func(name string, values []rawEnumValue) bool { return true })
	})
}
