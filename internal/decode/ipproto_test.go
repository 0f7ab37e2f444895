package decode

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestIPProtoName(t *testing.T) {
	checkNames(t, "IPProtoName", IPProtoName, map[uint8]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp",
		unix.IPPROTO_ICMP: "icmp", unix.IPPROTO_ICMPV6: "icmpv6", unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_GRE: "gre",
		0: "0", 41: "41", 255: "255"})
}

// FuzzIPProtoName: one name per number, never the name of another.
func FuzzIPProtoName(f *testing.F) {
	f.Add(uint8(6))
	f.Add(uint8(99))
	f.Fuzz(func(t *testing.T, p uint8) {
		n := IPProtoName(p)
		for q := range 256 {
			if uint8(q) != p && IPProtoName(uint8(q)) == n {
				t.Fatalf("IPProtoName(%d) = IPProtoName(%d) = %q", p, q, n)
			}
		}
		if v, err := strconv.Atoi(n); err == nil && v != int(p) {
			t.Fatalf("IPProtoName(%d) = %q", p, n)
		}
	})
}
