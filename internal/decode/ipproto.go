package decode

import "strconv"

// IP protocol numbers (IANA) netsonde names.
const (
	IPProtoICMP   = 1
	IPProtoTCP    = 6
	IPProtoUDP    = 17
	IPProtoGRE    = 47
	IPProtoICMPv6 = 58
	IPProtoSCTP   = 132
)

// IPProtoName names an IP protocol number (an IPv4 header's protocol, an
// IPv6 header's next header, conntrack's l4proto): tcp, udp, icmp,
// icmpv6, sctp, gre, or the number in decimal, at most 256 values.
func IPProtoName(p uint8) string {
	switch p {
	case IPProtoTCP:
		return "tcp"
	case IPProtoUDP:
		return "udp"
	case IPProtoICMP:
		return "icmp"
	case IPProtoICMPv6:
		return "icmpv6"
	case IPProtoSCTP:
		return "sctp"
	case IPProtoGRE:
		return "gre"
	default:
		return strconv.Itoa(int(p))
	}
}
