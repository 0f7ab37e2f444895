package decode

import "testing"

func TestRcodeName(t *testing.T) {
	want := []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other", "other"}
	for i, w := range want {
		if got := RcodeName(uint16(i)); got != w {
			t.Errorf("RcodeName(%d) = %q, want %q", i, got, w)
		}
	}
	if got := RcodeName(15); got != "other" {
		t.Errorf("RcodeName(15) = %q", got)
	}
}

// FuzzRcodeName: whatever 16 bits a map holds, the label is one of the
// seven values.
func FuzzRcodeName(f *testing.F) {
	f.Add(uint16(3))
	f.Add(uint16(0xffff))
	known := map[string]bool{"NOERROR": true, "FORMERR": true, "SERVFAIL": true, "NXDOMAIN": true, "NOTIMP": true, "REFUSED": true, "other": true}
	f.Fuzz(func(t *testing.T, r uint16) {
		if n := RcodeName(r); !known[n] || (r > 5) != (n == "other") {
			t.Fatalf("RcodeName(%d) = %q", r, n)
		}
	})
}
