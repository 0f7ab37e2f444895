package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func udp4(payload string) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[9] = 0x45, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], 53)
	copy(b[28:], payload)
	return b
}

func TestDecode(t *testing.T) {
	got := Decode(udp4("x"))
	want := Tuple{Protocol: "udp", Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 53}
	if got != want {
		t.Fatalf("IPv4/UDP: %+v, want %+v", got, want)
	}
	v6 := make([]byte, 48)
	v6[0], v6[6] = 0x60, 6
	a, b := netip.MustParseAddr("fd00:5e::1").As16(), netip.MustParseAddr("fd00:5e::2").As16()
	copy(v6[8:], a[:])
	copy(v6[24:], b[:])
	binary.BigEndian.PutUint16(v6[40:], 443)
	binary.BigEndian.PutUint16(v6[42:], 50000)
	if got := Decode(v6); got.Protocol != "tcp" || got.Src.String() != "fd00:5e::1" || got.SrcPort != 443 || got.DstPort != 50000 {
		t.Fatalf("IPv6/TCP: %+v", got)
	}
	// A later fragment has no ports; a truncated header decodes to nothing.
	frag := udp4("x")
	binary.BigEndian.PutUint16(frag[6:], 10)
	if got := Decode(frag); got.SrcPort != 0 || got.Protocol != "udp" {
		t.Fatalf("fragment: %+v", got)
	}
	if got := Decode(udp4("")[:12]); got != (Tuple{}) {
		t.Fatalf("truncated: %+v", got)
	}
}

func TestParseQueryNamesBadFilters(t *testing.T) {
	for q, want := range map[string]string{
		"reason=netfilter_drop": `--reason="netfilter_drop"`,
		"pod=shop":              `--pod="shop"`,
		"protocol=quic":         `--protocol="quic"`,
		"host=1.2.3":            `--host="1.2.3"`,
		"port=70000":            `--port="70000"`,
		"count=-1":              `--count="-1"`,
		"duration=soon":         `--duration="soon"`,
		"snaplen=100000":        `--snaplen="100000"`,
	} {
		v, _ := url.ParseQuery(q)
		_, err := ParseQuery(v)
		if !errors.Is(err, ErrBadFilter) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an ErrBadFilter naming %s", q, err, want)
		}
	}
	r := Request{Reasons: []string{"NETFILTER_DROP", "NO_SOCKET"}, Pod: "shop/web", Interface: "eth0", Protocol: "udp",
		Host: netip.MustParseAddr("198.18.0.1"), Port: 53, Count: 50, Duration: time.Minute, Snaplen: 96}
	back, err := ParseQuery(r.Query())
	if err != nil {
		t.Fatal(err)
	}
	if back.Pod != r.Pod || len(back.Reasons) != 2 || back.Host != r.Host || back.Port != 53 || back.Count != 50 || back.Duration != time.Minute || back.Snaplen != 96 {
		t.Fatalf("round trip: %+v, want %+v", back, r)
	}
}

// The file's bytes, exactly: libpcap's header with LINKTYPE_RAW, then one
// record cut at the snap length with its length on the wire kept.
func TestPcapWriter(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewPcapWriter(&buf, 30)
	if err != nil {
		t.Fatal(err)
	}
	data := udp4("0123")
	ts := time.Unix(1700000000, 123456000)
	if err := w.Write(&Packet{Time: ts, Len: 32, Data: data}); err != nil {
		t.Fatal(err)
	}
	// Not IP: no record.
	if err := w.Write(&Packet{Time: ts, Len: 60, Data: []byte{0x00, 0x01}}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	le := binary.LittleEndian
	if len(b) != 24+16+30 {
		t.Fatalf("%d bytes, want 70", len(b))
	}
	for off, want := range map[int]uint32{0: 0xa1b2c3d4, 16: 30, 20: 101, 24: 1700000000, 28: 123456, 32: 30, 36: 32} {
		if got := le.Uint32(b[off:]); got != want {
			t.Errorf("offset %d: %d, want %d", off, got, want)
		}
	}
	if le.Uint16(b[4:]) != 2 || le.Uint16(b[6:]) != 4 || !bytes.Equal(b[40:], data[:30]) {
		t.Errorf("version or data wrong: % x", b)
	}
}
