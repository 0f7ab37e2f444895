package decode

// tcpStates names enum tcp_state (include/net/tcp_states.h).
var tcpStates = [...]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}

// TCPStateName names a socket's TCP state (sk_state, enum tcp_state) as
// the state label, "UNKNOWN" for a value outside the enum.
func TCPStateName(s uint8) string {
	if int(s) < len(tcpStates) && tcpStates[s] != "" {
		return tcpStates[s]
	}
	return "UNKNOWN"
}

// conntrackTCPStates names enum tcp_conntrack
// (include/uapi/linux/netfilter/nf_conntrack_tcp.h).
var conntrackTCPStates = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// ConntrackTCPStateName names a conntrack entry's TCP state
// (CTA_PROTOINFO_TCP_STATE, enum tcp_conntrack), "" for a value outside
// the enum: the state machine differs from the socket's (FIN_WAIT is one
// state, SYN_SENT2 a simultaneous open).
func ConntrackTCPStateName(s uint8) string {
	if int(s) < len(conntrackTCPStates) {
		return conntrackTCPStates[s]
	}
	return ""
}
