package decode

import (
	"encoding/binary"
	"testing"
)

func TestEtherTypeName(t *testing.T) {
	checkNames(t, "EtherTypeName", EtherTypeName, map[uint16]string{0: "", 0x0800: "ipv4", 0x86dd: "ipv6", 0x0806: "arp",
		0x8100: "vlan", 0x88a8: "qinq", 0x8847: "mpls", 0x8848: "mpls", 0x8863: "pppoe", 0x8864: "pppoe", 0x88cc: "lldp",
		EtherTypeOther: "other", 0x1234: "other", 0x0008: "other", 0xdd86: "other"})
}

// TestEtherTypeNameByteOrder: a key's protocol written by an object of
// either byte order, read back in that order, names the same EtherType;
// the same two bytes read in the other order are not IPv6.
func TestEtherTypeNameByteOrder(t *testing.T) {
	for _, bo := range []binary.ByteOrder{binary.BigEndian, binary.LittleEndian} {
		b := make([]byte, 2)
		bo.PutUint16(b, EtherTypeIPv6)
		if got := EtherTypeName(bo.Uint16(b)); got != "ipv6" {
			t.Errorf("%v: %q, want ipv6", bo, got)
		}
	}
	b := binary.BigEndian.AppendUint16(nil, EtherTypeIPv6)
	if got := EtherTypeName(binary.LittleEndian.Uint16(b)); got != "other" {
		t.Errorf("big-endian bytes read as little-endian: %q, want other", got)
	}
}

// FuzzEtherTypeName: the label set is fixed (nine names, "" and "other"),
// whatever 16 bits a pod puts in a frame.
func FuzzEtherTypeName(f *testing.F) {
	f.Add(uint16(0x0800))
	f.Add(uint16(0x1234))
	labels := map[string]bool{"": true, "ipv4": true, "ipv6": true, "arp": true, "vlan": true, "qinq": true,
		"mpls": true, "pppoe": true, "lldp": true, "other": true}
	f.Fuzz(func(t *testing.T, p uint16) {
		n := EtherTypeName(p)
		if !labels[n] || (n == "") != (p == 0) {
			t.Fatalf("EtherTypeName(%#04x) = %q", p, n)
		}
		if p < 0x0600 && p != 0 && n != "other" {
			t.Fatalf("EtherTypeName(%#04x) = %q for a length field", p, n)
		}
	})
}
