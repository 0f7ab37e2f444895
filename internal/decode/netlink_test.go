package decode

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

func nlattr(typ uint16, v []byte) []byte { return AppendNetlinkAttr(nil, typ, v) }

func TestNetlinkAttrs(t *testing.T) {
	msg := append(nlattr(3, []byte("eth0")), nlattr(7|unix.NLA_F_NESTED, nlattr(1, []byte{1, 2, 3}))...)
	msg = append(msg, nlattr(9|unix.NLA_F_NET_BYTEORDER, []byte{0x08, 0x00})...)
	type attr struct {
		typ uint16
		v   string
	}
	var got []attr
	if err := NetlinkAttrs(msg, func(typ uint16, v []byte) { got = append(got, attr{typ, string(v)}) }); err != nil {
		t.Fatal(err)
	}
	want := []attr{{3, "eth0"}, {7, string(nlattr(1, []byte{1, 2, 3}))}, {9, "\x08\x00"}}
	if len(got) != len(want) {
		t.Fatalf("%d attributes %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("attribute %d: %v, want %v", i, got[i], want[i])
		}
	}
	// The last attribute unpadded (the kernel pads, a message may end
	// without): still read. A length past the end or below the header:
	// an error.
	if err := NetlinkAttrs(nlattr(1, []byte{1})[:5], func(uint16, []byte) {}); err != nil {
		t.Errorf("unpadded last attribute: %v", err)
	}
	for _, bad := range [][]byte{{9, 0, 1, 0, 0, 0, 0, 0}, {2, 0, 1, 0}} {
		if err := NetlinkAttrs(bad, func(uint16, []byte) {}); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}
}

// FuzzNetlinkAttrs: every value handed over lies inside the message, and
// an error-free walk has seen every byte but the padding.
func FuzzNetlinkAttrs(f *testing.F) {
	f.Add(append(nlattr(3, []byte("eth0")), nlattr(1, nil)...))
	f.Add([]byte{3, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		seen, n := 0, 0
		err := NetlinkAttrs(b, func(typ uint16, v []byte) {
			if typ&^nlaTypeMask != 0 || len(v) > len(b)-4 {
				t.Fatalf("type %#x, %d bytes of value in %d", typ, len(v), len(b))
			}
			if i := bytes.Index(b, v); len(v) > 0 && i < 0 {
				t.Fatalf("value %x not in the message", v)
			}
			seen, n = seen+4+len(v), n+1
		})
		// Up to 3 bytes of padding each, and fewer than a header's at
		// the end.
		if err == nil && len(b)-seen > 3*n+3 {
			t.Fatalf("%d of %d bytes walked", seen, len(b))
		}
	})
}
