package decode

// qtypes names the query types bpf/dns/dns.c's fold_qtype keeps apart;
// it folds every other to 0.
var qtypes = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV", 65: "HTTPS",
}

// QtypeName names a folded query type as the qtype label: "other" for 0
// and for any type fold_qtype does not keep, so that a client's choice of
// type never becomes a label value of its own.
func QtypeName(t uint16) string {
	if n, ok := qtypes[t]; ok {
		return n
	}
	return "other"
}
