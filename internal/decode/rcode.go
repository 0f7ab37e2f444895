package decode

// RcodeName names a DNS header's 4-bit RCODE (RFC 1035 4.1.1) as the
// rcode label: the six of RFC 1035 by name, every other "other" (a
// server chooses its answers' rcode, so no other value becomes a label).
func RcodeName(r uint16) string {
	switch r {
	case 0:
		return "NOERROR"
	case 1:
		return "FORMERR"
	case 2:
		return "SERVFAIL"
	case 3:
		return "NXDOMAIN"
	case 4:
		return "NOTIMP"
	case 5:
		return "REFUSED"
	default:
		return "other"
	}
}
