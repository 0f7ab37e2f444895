package drops

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
)

// appendRecord encodes r as drops.c's capture_record, in byte order e.
func appendRecord(e binary.AppendByteOrder, r CaptureRecord) []byte {
	b := e.AppendUint64(nil, r.KtimeNs)
	b = e.AppendUint64(b, r.Location)
	b = e.AppendUint64(b, r.Netns)
	for _, v := range []uint32{r.Reason, r.Ifindex, r.Len, uint32(len(r.Data))} {
		b = e.AppendUint32(b, v)
	}
	b = e.AppendUint16(b, r.Protocol)
	b = e.AppendUint16(b, r.Captures)
	return append(b, r.Data...)
}

// TestParseCaptureRecordByteOrder decodes records as each committed
// object (bpfel and bpfeb) writes them, in the byte order read from the
// object itself: a big-endian object's record decodes to the same values
// on this little-endian host, and read in the host's order instead it
// would not.
func TestParseCaptureRecordByteOrder(t *testing.T) {
	want := CaptureRecord{KtimeNs: 0x0102030405060708, Location: 0xffffffff81234567, Netns: 4026531840,
		Reason: 0x00030002, Ifindex: 7, Len: 1500, Protocol: 0x86dd, Captures: 0b101,
		Data: []byte{0x60, 0, 0, 0, 0, 8, 17, 64}}
	for obj, order := range map[string]binary.ByteOrder{"bpf_bpfel.o": binary.LittleEndian, "bpf_bpfeb.o": binary.BigEndian} {
		spec, err := ebpf.LoadCollectionSpec(obj)
		if err != nil {
			t.Fatal(err)
		}
		if spec.ByteOrder != order {
			t.Fatalf("%s: byte order %v, want %v", obj, spec.ByteOrder, order)
		}
		raw := appendRecord(order.(binary.AppendByteOrder), want)
		got, err := ParseCaptureRecord(raw, spec.ByteOrder)
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", obj, got, want)
		}
	}
	// The same big-endian record read as if every object were the host's.
	raw := appendRecord(binary.BigEndian, want)
	raw = raw[:recordHeader] // caplen read the wrong way round exceeds the sample
	binary.BigEndian.PutUint32(raw[36:], 0)
	got, err := ParseCaptureRecord(raw, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if got.Protocol != 0xdd86 || got.Ifindex != 7<<24 {
		t.Errorf("big-endian record read little-endian: protocol %#04x, ifindex %d; want the bytes swapped", got.Protocol, got.Ifindex)
	}
}

// TestEmbeddedObjectIsTheHosts: the object Load embeds is in the host's
// byte order (bpf2go's build tags pick it), so that the values the
// cilium/ebpf map API hands over in host order agree with the object's.
func TestEmbeddedObjectIsTheHosts(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	spec.ByteOrder.PutUint16(got, 1)
	if want := binary.NativeEndian.AppendUint16(nil, 1); !bytes.Equal(got, want) {
		t.Errorf("embedded object writes 1 as %x, the host as %x", got, want)
	}
}

func TestParseCaptureRecordBounds(t *testing.T) {
	r := appendRecord(binary.LittleEndian, CaptureRecord{Protocol: 0x0800, Data: make([]byte, 20)})
	if _, err := ParseCaptureRecord(r[:recordHeader-1], binary.LittleEndian); err == nil {
		t.Error("a record cut inside its header decoded")
	}
	if _, err := ParseCaptureRecord(r[:len(r)-1], binary.LittleEndian); err == nil {
		t.Error("a record whose caplen exceeds its bytes decoded")
	}
	big := appendRecord(binary.LittleEndian, CaptureRecord{Data: make([]byte, MaxSnaplen+1)})
	if _, err := ParseCaptureRecord(big, binary.LittleEndian); err == nil {
		t.Errorf("caplen %d beyond MaxSnaplen decoded", MaxSnaplen+1)
	}
}

// FuzzParseCaptureRecord: whatever a sample holds, in either byte order,
// a record decodes only with its data inside the sample and MaxSnaplen,
// and encodes back to the same bytes.
func FuzzParseCaptureRecord(f *testing.F) {
	f.Add(appendRecord(binary.LittleEndian, CaptureRecord{Protocol: 0x0800, Data: []byte{0x45}}), true)
	f.Add(appendRecord(binary.BigEndian, CaptureRecord{Protocol: 0x86dd, Data: []byte{0x60}}), false)
	f.Fuzz(func(t *testing.T, b []byte, little bool) {
		var e interface {
			binary.ByteOrder
			binary.AppendByteOrder
		} = binary.BigEndian
		if little {
			e = binary.LittleEndian
		}
		r, err := ParseCaptureRecord(b, e)
		if err != nil {
			return
		}
		if len(r.Data) > MaxSnaplen || len(r.Data) > len(b)-recordHeader {
			t.Fatalf("%d bytes of data from a sample of %d", len(r.Data), len(b))
		}
		if back := appendRecord(e, r); !bytes.Equal(back, b[:len(back)]) {
			t.Fatalf("re-encoded %x, sample %x", back, b[:len(back)])
		}
	})
}
