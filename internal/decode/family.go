package decode

// Address families (linux/socket.h), as sockets, neighbour tables and
// the BPF programs' keys carry them.
const (
	FamilyInet  = 2  // AF_INET
	FamilyInet6 = 10 // AF_INET6
)

// FamilyName names an address family as the family label: ipv4, ipv6,
// or "other".
func FamilyName(f uint16) string {
	switch f {
	case FamilyInet:
		return "ipv4"
	case FamilyInet6:
		return "ipv6"
	default:
		return "other"
	}
}
