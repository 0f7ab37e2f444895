// Package capture is what `netsonde capture` exchanges and writes: the
// request (filters and limits), the dropped packets and the summary as the
// agent streams them (JSON lines), their text form, and a pcap writer.
package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/netsonde/netsonde/internal/decode"
)

// DefaultSnaplen keeps an IPv6 header and a TCP header with every option
// (40 + 60), plus room for a UDP or ICMP header behind IPv4 options: the
// headers, not what they carry.
const DefaultSnaplen = 128

// Request is one capture's filters and limits.
type Request struct {
	Reasons   []string // drop reason names; empty: any
	Pod       string   // NAMESPACE/NAME
	Namespace string   // the pod's Kubernetes namespace
	Interface string
	Protocol  string // tcp, udp, icmp, icmpv6, ipv4, ipv6, arp
	Host      netip.Addr
	Port      uint16
	Count     int
	Duration  time.Duration
	Snaplen   int
	// Rate is the agent's (--capture.max-rate), never the client's.
	Rate int
}

// ErrBadFilter marks a request the agent refuses as malformed.
var ErrBadFilter = errors.New("bad capture filter")

func bad(name, value, why string) error {
	return fmt.Errorf("%w: --%s=%q: %s", ErrBadFilter, name, value, why)
}

// Protocols a filter names: EtherTypes (in the kernel) or IP protocols.
var etherTypes = map[string]uint16{"ipv4": decode.EtherTypeIPv4, "ipv6": decode.EtherTypeIPv6, "arp": decode.EtherTypeARP}
var ipProtocols = map[string]uint8{"tcp": decode.IPProtoTCP, "udp": decode.IPProtoUDP, "icmp": decode.IPProtoICMP,
	"icmpv6": decode.IPProtoICMPv6, "sctp": decode.IPProtoSCTP}

// EtherType is the kernel-side protocol filter of p: 0 for any.
func EtherType(p string) uint16 { return etherTypes[p] }

// Query encodes r for the agent's capture endpoint.
func (r Request) Query() url.Values {
	q := url.Values{}
	for _, s := range r.Reasons {
		q.Add("reason", s)
	}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("pod", r.Pod)
	set("namespace", r.Namespace)
	set("interface", r.Interface)
	set("protocol", r.Protocol)
	if r.Host.IsValid() {
		q.Set("host", r.Host.String())
	}
	if r.Port != 0 {
		q.Set("port", strconv.Itoa(int(r.Port)))
	}
	if r.Count != 0 {
		q.Set("count", strconv.Itoa(r.Count))
	}
	if r.Duration != 0 {
		q.Set("duration", r.Duration.String())
	}
	if r.Snaplen != 0 {
		q.Set("snaplen", strconv.Itoa(r.Snaplen))
	}
	return q
}

// ParseQuery decodes and checks a request; an error names the filter.
func ParseQuery(q url.Values) (Request, error) {
	r := Request{Reasons: q["reason"], Pod: q.Get("pod"), Namespace: q.Get("namespace"),
		Interface: q.Get("interface"), Protocol: strings.ToLower(q.Get("protocol"))}
	var err error
	if v := q.Get("host"); v != "" {
		if r.Host, err = netip.ParseAddr(v); err != nil {
			return r, bad("host", v, "not an IP address")
		}
	}
	if v := q.Get("port"); v != "" {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			return r, bad("port", v, "not a port number (1-65535)")
		}
		r.Port = uint16(p)
	}
	for _, k := range []struct {
		name string
		dst  *int
	}{{"count", &r.Count}, {"snaplen", &r.Snaplen}} {
		if v := q.Get(k.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return r, bad(k.name, v, "not a non-negative integer")
			}
			*k.dst = n
		}
	}
	if v := q.Get("duration"); v != "" {
		if r.Duration, err = time.ParseDuration(v); err != nil || r.Duration < 0 {
			return r, bad("duration", v, "not a duration (10s, 1m)")
		}
	}
	return r, r.Check()
}

// Check validates what does not need the kernel's names.
func (r Request) Check() error {
	for _, s := range r.Reasons {
		if s == "" || strings.ToUpper(s) != s || strings.ContainsAny(s, " /") {
			return bad("reason", s, "not a drop reason name (NETFILTER_DROP, NO_SOCKET, ...)")
		}
	}
	if r.Pod != "" {
		if ns, name, ok := strings.Cut(r.Pod, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return bad("pod", r.Pod, "want NAMESPACE/NAME")
		}
	}
	if p := r.Protocol; p != "" {
		if _, ok := etherTypes[p]; !ok {
			if _, ok := ipProtocols[p]; !ok {
				return bad("protocol", p, "want one of tcp, udp, icmp, icmpv6, sctp, ipv4, ipv6, arp")
			}
		}
	}
	if r.Snaplen > 65535 {
		return bad("snaplen", strconv.Itoa(r.Snaplen), "at most 65535")
	}
	return nil
}

// Packet is one dropped packet.
type Packet struct {
	Time      time.Time `json:"time"`
	Reason    string    `json:"reason"`
	Location  string    `json:"location,omitempty"` // kernel function that dropped it
	Interface string    `json:"interface,omitempty"`
	Netns     uint64    `json:"netns,omitempty"` // the namespace's cookie (SO_NETNS_COOKIE)
	Namespace string    `json:"namespace,omitempty"`
	Pod       string    `json:"pod,omitempty"`
	EtherType string    `json:"ethertype,omitempty"`
	Len       int       `json:"len"`  // on the wire, from L3
	Data      []byte    `json:"data"` // from L3, snaplen bytes at most
	Tuple
}

// Tuple is what the packet's headers say, as far as they were captured.
type Tuple struct {
	Protocol string     `json:"protocol,omitempty"`
	Src      netip.Addr `json:"src,omitzero"`
	Dst      netip.Addr `json:"dst,omitzero"`
	SrcPort  uint16     `json:"sport,omitempty"`
	DstPort  uint16     `json:"dport,omitempty"`
}

// Summary ends a capture.
type Summary struct {
	Packets uint64 `json:"packets"`
	// RateLimited: drops that matched in the kernel but the rate limit
	// refused; NoSpace: admitted but the ring buffer was full;
	// Unmatched: copied but refused by the user-space filters (pod,
	// namespace, host, port, IP protocol).
	RateLimited uint64 `json:"rate_limited"`
	NoSpace     uint64 `json:"no_space"`
	Unmatched   uint64 `json:"unmatched"`
	Ended       string `json:"ended"` // count, duration, client, agent
}

// Line is one line of the endpoint's stream: a packet, the summary (last),
// or an error (last).
type Line struct {
	Packet  *Packet  `json:"packet,omitempty"`
	Summary *Summary `json:"summary,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Decode reads the IP header and the ports behind it.
func Decode(data []byte) Tuple {
	var t Tuple
	if len(data) < 1 {
		return t
	}
	var proto uint8
	var l4 []byte
	switch data[0] >> 4 {
	case 4:
		if len(data) < 20 {
			return t
		}
		t.Src = netip.AddrFrom4([4]byte(data[12:16]))
		t.Dst = netip.AddrFrom4([4]byte(data[16:20]))
		proto = data[9]
		if ihl := int(data[0]&0xf) * 4; ihl >= 20 && len(data) >= ihl {
			// Only a first fragment has the ports.
			if binary.BigEndian.Uint16(data[6:])&0x1fff == 0 {
				l4 = data[ihl:]
			}
		}
	case 6:
		if len(data) < 40 {
			return t
		}
		t.Src = netip.AddrFrom16([16]byte(data[8:24]))
		t.Dst = netip.AddrFrom16([16]byte(data[24:40]))
		proto = data[6] // extension headers are not walked
		l4 = data[40:]
	default:
		return t
	}
	t.Protocol = decode.IPProtoName(proto)
	if (proto == decode.IPProtoICMP && data[0]>>4 == 6) || (proto == decode.IPProtoICMPv6 && data[0]>>4 == 4) {
		// ICMP of the other family: not what a filter's name means.
		t.Protocol = strconv.Itoa(int(proto))
	}
	if (proto == decode.IPProtoTCP || proto == decode.IPProtoUDP || proto == decode.IPProtoSCTP) && len(l4) >= 4 {
		t.SrcPort = binary.BigEndian.Uint16(l4)
		t.DstPort = binary.BigEndian.Uint16(l4[2:])
	}
	return t
}

// MatchTuple applies the filters the kernel does not: host, port and the
// IP protocol.
func (r Request) MatchTuple(t Tuple) bool {
	if r.Host.IsValid() && t.Src != r.Host && t.Dst != r.Host {
		return false
	}
	if r.Port != 0 && t.SrcPort != r.Port && t.DstPort != r.Port {
		return false
	}
	if _, ip := ipProtocols[r.Protocol]; ip && t.Protocol != r.Protocol {
		return false
	}
	return true
}

// Text is a packet's one line.
func (p *Packet) Text() string {
	var b strings.Builder
	b.WriteString(p.Time.UTC().Format("15:04:05.000000"))
	b.WriteString(" " + p.Reason)
	field := func(s string) {
		if s == "" {
			s = "-"
		}
		b.WriteString(" " + s)
	}
	field(p.Interface)
	pod := ""
	if p.Pod != "" {
		pod = p.Namespace + "/" + p.Pod
	}
	field(pod)
	proto := p.Protocol
	if proto == "" {
		proto = p.EtherType
	}
	field(proto)
	if p.Src.IsValid() {
		b.WriteString(" " + endpoint(p.Src, p.SrcPort) + " > " + endpoint(p.Dst, p.DstPort))
	}
	fmt.Fprintf(&b, " len %d", p.Len)
	if p.Location != "" {
		b.WriteString(" at " + p.Location)
	}
	return b.String()
}

func endpoint(a netip.Addr, port uint16) string {
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}
