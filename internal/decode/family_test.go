package decode

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestFamilyName(t *testing.T) {
	checkNames(t, "FamilyName", FamilyName, map[uint16]string{unix.AF_INET: "ipv4", unix.AF_INET6: "ipv6",
		unix.AF_UNSPEC: "other", unix.AF_BRIDGE: "other", 0x0200: "other", 0x0a00: "other"})
}

func FuzzFamilyName(f *testing.F) {
	f.Add(uint16(unix.AF_INET6))
	f.Fuzz(func(t *testing.T, fam uint16) {
		n := FamilyName(fam)
		if (n == "ipv4") != (fam == unix.AF_INET) || (n == "ipv6") != (fam == unix.AF_INET6) || (n != "ipv4" && n != "ipv6" && n != "other") {
			t.Fatalf("FamilyName(%d) = %q", fam, n)
		}
	})
}
