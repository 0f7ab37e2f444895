package mtucheck

import (
	"net"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/netsonde/netsonde/agent/hostnet"
)

// overhead is what an encapsulation adds in front of the inner packet, by
// the outer IP family. Figures are header sizes from the protocols' RFCs,
// and match the kernel's own defaults (a new vxlan over a 1500-byte device
// gets 1450, an ipip tunnel 1480):
//   - vxlan: outer IPv4 20 / IPv6 40 + UDP 8 + VXLAN 8 (RFC 7348) + the
//     inner Ethernet header 14 = 50 / 70.
//   - geneve: same as vxlan with no options (RFC 8926): 50 / 70.
//   - wireguard: IP 20/40 + UDP 8 + WireGuard data header 16 + Poly1305
//     tag 16 = 60 / 80 (wireguard-tools' documented 60 / 80).
//   - ipip, sit (IPv4 outer): 20. ip6tnl: IPv6 40 + the tunnel encapsulation
//     limit option 8 that Linux adds by default (RFC 2473) = 48.
//   - gre: IPv4 20 + GRE 4 = 24 (ip6gre: 44); gretap adds the inner
//     Ethernet 14: 38 (ip6gretap: 58). Keys, checksums and sequence numbers
//     add 4 bytes each on top; they are not counted here.
type overhead struct{ v4, v6 int }

var encapsulations = map[string]overhead{
	"vxlan":     {50, 70},
	"geneve":    {50, 70},
	"wireguard": {60, 80},
	"ipip":      {20, 20},
	"sit":       {20, 20},
	"ip6tnl":    {48, 48},
	"gre":       {24, 24},
	"ip6gre":    {44, 44},
	"gretap":    {38, 38},
	"ip6gretap": {58, 58},
}

// routeLookup returns the device index a packet to dst leaves by (the
// default route's for nil), or 0.
type routeLookup func(dst net.IP) int

// verdict is what the checker concludes about one interface.
type verdict struct {
	iface    string
	expected int             // 0 when nothing constrains the interface
	reasons  map[string]bool // reason -> mismatching now
}

// Reasons, as netsonde_mtu_mismatch{reason}.
const (
	reasonExceedsUnderlay = "exceeds_underlay" // a tunnel larger than its underlay allows
	reasonExceedsOverlay  = "exceeds_overlay"  // a pod interface larger than the overlay it routes through
	reasonDiffersFromCNI  = "differs_from_cni_config"
	reasonDiffersFromPeer = "differs_from_peer" // the two ends of a veth disagree
)

// check judges every interface of one namespace. cniMTU is the MTU the
// node's CNI configuration declares (0 if none).
func check(links []hostnet.Link, route routeLookup, cniMTU int, peerMTU func(l hostnet.Link) (int, bool)) []verdict {
	byIndex := make(map[int]hostnet.Link, len(links))
	for _, l := range links {
		byIndex[l.Index] = l
	}
	var out []verdict
	underlays := map[int]bool{}
	// fit is the largest packet the overlay can carry from a pod: the
	// smaller of the overlay's MTU and what its underlay leaves it.
	fit := 0

	for _, l := range links {
		oh, ok := encapsulations[l.Kind]
		if !ok {
			continue
		}
		under, remote := underlayOf(l, route)
		u, found := byIndex[under]
		if !found {
			continue // the underlay is not in this namespace (or unknown)
		}
		underlays[under] = true
		o := oh.v4
		if remote != nil && remote.To4() == nil {
			o = oh.v6
		}
		exp := u.MTU - o
		out = append(out, verdict{iface: l.Name, expected: exp, reasons: map[string]bool{reasonExceedsUnderlay: l.MTU > exp}})
		f := min(l.MTU, exp)
		if fit == 0 || f < fit {
			fit = f
		}
	}

	// Pod-facing interfaces: veths, except those that carry a tunnel.
	// With an overlay they must fit through it; with native routing
	// they must fit the device of the default route.
	if fit == 0 {
		if dev, ok := byIndex[route(nil)]; ok && dev.Kind != "veth" {
			fit = dev.MTU
		}
	}
	for _, l := range links {
		if l.Kind != "veth" || underlays[l.Index] {
			continue
		}
		v := verdict{iface: l.Name, reasons: map[string]bool{}}
		if fit > 0 {
			v.expected = fit
			v.reasons[reasonExceedsOverlay] = l.MTU > fit
		}
		if m, ok := peerMTU(l); ok {
			v.reasons[reasonDiffersFromPeer] = l.MTU != m
		}
		if cniMTU > 0 {
			v.reasons[reasonDiffersFromCNI] = l.MTU != cniMTU
			if v.expected == 0 {
				v.expected = cniMTU
			}
		}
		if len(v.reasons) > 0 {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].iface < out[j].iface })
	return out
}

// underlayOf finds the device a tunnel sends its encapsulated packets by:
// the device it is bound to, else the route to its remote end.
func underlayOf(l hostnet.Link, route routeLookup) (int, net.IP) {
	var bound int
	var remote net.IP
	switch t := l.Attrs.(type) {
	case *netlink.Vxlan:
		bound, remote = t.VtepDevIndex, t.Group
	case *netlink.Geneve:
		remote = t.Remote
	case *netlink.Iptun:
		bound, remote = int(t.Link), t.Remote
	case *netlink.Sittun:
		bound, remote = int(t.Link), t.Remote
	case *netlink.Ip6tnl:
		bound, remote = int(t.Link), t.Remote
	case *netlink.Gretun:
		bound, remote = int(t.Link), t.Remote
	case *netlink.Gretap:
		bound, remote = int(t.Link), t.Remote
	}
	if bound == 0 {
		bound = l.ParentIndex
	}
	if bound == 0 && remote != nil && !remote.IsUnspecified() {
		bound = route(remote)
	}
	return bound, remote
}
