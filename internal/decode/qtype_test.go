package decode

import "testing"

func TestQtypeName(t *testing.T) {
	checkNames(t, "QtypeName", QtypeName, map[uint16]string{1: "A", 28: "AAAA", 33: "SRV", 12: "PTR", 16: "TXT", 5: "CNAME",
		15: "MX", 2: "NS", 6: "SOA", 65: "HTTPS", 0: "other", 255: "other", 64: "other"})
}

// FuzzQtypeName: at most the ten kept types and "other", whatever the
// kernel's map holds.
func FuzzQtypeName(f *testing.F) {
	f.Add(uint16(28))
	f.Add(uint16(0))
	f.Fuzz(func(t *testing.T, q uint16) {
		n := QtypeName(q)
		if _, kept := qtypes[q]; kept == (n == "other") {
			t.Fatalf("QtypeName(%d) = %q", q, n)
		}
	})
}
