package decode

import "testing"

func TestDNSName(t *testing.T) {
	for _, c := range []struct {
		wire []byte
		want string
		ok   bool
	}{
		{[]byte("\x02ok\x04test\x00\x00\x01"), "ok.test", true},
		{[]byte("\x00"), ".", true},
		{[]byte("\x03a.b\x01\x07\x00"), `a\.b.\007`, true},
		{[]byte("\x02ok\x04te"), "", false},   // cut short
		{[]byte("\x02ok\xc0\x0c"), "", false}, // compression pointer
		{[]byte("\x02ok\x04test"), "", false}, // no final 0
		{[]byte{}, "", false},
	} {
		got, ok := DNSName(c.wire)
		if got != c.want || ok != c.ok {
			t.Errorf("DNSName(%q) = %q, %v; want %q, %v", c.wire, got, ok, c.want, c.ok)
		}
	}
}

func FuzzDNSName(f *testing.F) {
	f.Add([]byte("\x02ok\x04test\x00"))
	f.Add([]byte("\xc0\x0c"))
	f.Fuzz(func(t *testing.T, wire []byte) {
		got, ok := DNSName(wire)
		if !ok {
			return
		}
		for _, c := range []byte(got) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("raw byte %#x in %q", c, got)
			}
		}
	})
}
