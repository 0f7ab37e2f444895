package decode

// EtherTypes netsonde names (IEEE 802 numbers): the ones
// bpf/drops/drops.c's proto_key keeps apart, and folds every other into
// EtherTypeOther.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeARP   = 0x0806
	EtherTypeVLAN  = 0x8100 // 802.1Q
	EtherTypeIPv6  = 0x86dd
	EtherTypeMPLS  = 0x8847 // unicast; 0x8848 multicast
	EtherTypePPPoE = 0x8863 // discovery; 0x8864 session
	EtherTypeQinQ  = 0x88a8 // 802.1AD
	EtherTypeLLDP  = 0x88cc
	// EtherTypeOther is drops.c's PROTO_OTHER, every EtherType it does
	// not keep: a pod with CAP_NET_RAW chooses its frames' freely.
	EtherTypeOther = 0xffff
)

// EtherTypeName names an EtherType as the protocol label: "" for 0 (none
// set), one name each for those drops.c keeps (MPLS and PPPoE one for
// both of theirs), and "other" for every other, which a pod chooses
// freely and so never becomes a label value of its own. p is in host
// byte order, as the BPF programs store it (they convert skb->protocol
// with bpf_ntohs before it enters a map or a record).
func EtherTypeName(p uint16) string {
	switch p {
	case 0:
		return ""
	case EtherTypeIPv4:
		return "ipv4"
	case EtherTypeIPv6:
		return "ipv6"
	case EtherTypeARP:
		return "arp"
	case EtherTypeVLAN:
		return "vlan"
	case EtherTypeQinQ:
		return "qinq"
	case EtherTypeMPLS, EtherTypeMPLS + 1:
		return "mpls"
	case EtherTypePPPoE, EtherTypePPPoE + 1:
		return "pppoe"
	case EtherTypeLLDP:
		return "lldp"
	default:
		return "other"
	}
}
