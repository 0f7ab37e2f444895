package decode

import "testing"

func TestRcodeName(t *testing.T) {
	checkNames(t, "RcodeName", RcodeName, map[uint16]string{0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
		4: "NOTIMP", 5: "REFUSED", 6: "other", 7: "other", 15: "other"})
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
