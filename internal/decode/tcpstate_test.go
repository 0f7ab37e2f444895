package decode

import "testing"

func TestTCPStateName(t *testing.T) {
	checkNames(t, "TCPStateName", TCPStateName, map[uint8]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV",
		7: "CLOSE", 10: "LISTEN", 12: "NEW_SYN_RECV", 0: "UNKNOWN", 13: "UNKNOWN", 255: "UNKNOWN"})
	checkNames(t, "ConntrackTCPStateName", ConntrackTCPStateName, map[uint8]string{0: "NONE", 1: "SYN_SENT",
		3: "ESTABLISHED", 4: "FIN_WAIT", 9: "SYN_SENT2", 10: "", 255: ""})
}

// FuzzTCPStateName: 8 bits of a kernel map or a netlink attribute name
// one of the enum's values or the fallback, never an empty state label
// for a socket.
func FuzzTCPStateName(f *testing.F) {
	f.Add(uint8(1))
	f.Add(uint8(200))
	f.Fuzz(func(t *testing.T, s uint8) {
		if n := TCPStateName(s); n == "" || (n == "UNKNOWN") != (s == 0 || s > 12) {
			t.Fatalf("TCPStateName(%d) = %q", s, n)
		}
		if n := ConntrackTCPStateName(s); (n == "") != (s > 9) {
			t.Fatalf("ConntrackTCPStateName(%d) = %q", s, n)
		}
	})
}
