package mtucheck

import (
	"net"
	"slices"
	"sort"

	"github.com/vishvananda/netlink"

	"github.com/netsonde/netsonde/internal/hostview"
)

// overhead is what an encapsulation adds in front of the inner packet, by
// the outer IP family. Figures are header sizes from the protocols' RFCs,
// and match the kernel's own defaults (a new vxlan over a 1500-byte device
// gets 1450, an ipip tunnel 1480):
//   - vxlan: outer IPv4 20 / IPv6 40 + UDP 8 + VXLAN 8 (RFC 7348) + the
//     inner Ethernet header 14 = 50 / 70.
//   - geneve: same as vxlan with no options (RFC 8926): 50 / 70, plus
//     the options the CNI sends (--mtucheck.geneve-option-bytes).
//   - wireguard: IP 20/40 + UDP 8 + WireGuard data header 16 + Poly1305
//     tag 16 = 60 / 80 (wireguard-tools' documented 60 / 80). Its outer
//     family is each peer's endpoint's (see wireguardFit).
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
	expected int     // 0 when nothing constrains the interface
	reasons  reasons // reason -> mismatching now
}

// reasons holds, for each reason that applies to an interface, whether it
// mismatches now. A small array, not a map: the check runs on every
// scrape for every veth of the node (a thousand maps a scrape were a
// fifth of the agent's garbage at 1,000 interfaces).
type reasons struct {
	set, bad uint8 // bit i: reasonNames[i] applies / mismatches
}

func (r *reasons) put(reason int, bad bool) {
	r.set |= 1 << reason
	if bad {
		r.bad |= 1 << reason
	} else {
		r.bad &^= 1 << reason
	}
}

func (r reasons) empty() bool { return r.set == 0 }

// each calls f for each reason that applies, in reasonNames' order.
func (r reasons) each(f func(name string, bad bool)) {
	for i, name := range reasonNames {
		if r.set&(1<<i) != 0 {
			f(name, r.bad&(1<<i) != 0)
		}
	}
}

// Reasons, as netsonde_mtu_mismatch{reason}: their names are reasonNames.
const (
	reasonExceedsUnderlay = iota // a tunnel larger than its underlay allows
	reasonExceedsOverlay         // a pod interface larger than the overlay it routes through
	reasonDiffersFromCNI
	reasonDiffersFromPeer // the two ends of a veth disagree
	reasonBelowIPv6Min    // below 1,280 on a node that runs IPv6: the kernel took IPv6 off it
)

var reasonNames = [...]string{
	reasonExceedsUnderlay: "exceeds_underlay",
	reasonExceedsOverlay:  "exceeds_overlay",
	reasonDiffersFromCNI:  "differs_from_cni_config",
	reasonDiffersFromPeer: "differs_from_peer",
	reasonBelowIPv6Min:    "below_ipv6_minimum",
}

// ipv6MinMTU is the smallest MTU IPv6 allows on a link (RFC 8200). The
// kernel removes IPv6, addresses and all, from an interface set below it,
// and gives it none when it comes up below it.
const ipv6MinMTU = 1280

// facts is what the check knows of the node beyond its links.
type facts struct {
	cniMTU int // the MTU the node's CNI configuration declares (0 if none)
	// ipv6 is whether the namespace runs IPv6 (net.ipv6.conf.all and
	// .default.disable_ipv6 both 0): then every interface should carry it.
	ipv6 bool
	// geneveOptions are the bytes of Geneve options the CNI adds to each
	// packet (--mtucheck.geneve-option-bytes).
	geneveOptions int
	// wgEndpoints are the endpoints of each WireGuard device's peers, by
	// link index, as the background last read them over generic netlink.
	// A device absent here, or with no endpoint, is not judged.
	wgEndpoints map[int][]net.IP
}

// check judges every interface of one namespace.
func check(links []hostview.Link, route routeLookup, f facts, peerMTU func(l hostview.Link) (int, bool)) []verdict {
	cniMTU := f.cniMTU
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
		if l.Kind == "wireguard" {
			exp, under := wireguardFit(f.wgEndpoints[l.Index], route, links)
			if len(under) == 0 {
				continue // no peer endpoint known, or none routed here
			}
			for _, u := range under {
				underlays[u] = true
			}
			out = append(out, tunnelVerdict(l, exp))
			fit = fitThrough(fit, min(l.MTU, exp))
			continue
		}
		under, v6 := underlayOf(l, route)
		u, found := linkAt(links, under)
		if !found {
			continue // the underlay is not in this namespace (or unknown)
		}
		underlays[under] = true
		o := oh.v4
		if v6 {
			o = oh.v6
		}
		if l.Kind == "geneve" {
			o += f.geneveOptions
		}
		exp := u.MTU - o
		out = append(out, tunnelVerdict(l, exp))
		fit = fitThrough(fit, min(l.MTU, exp))
	}

	// Pod-facing interfaces: veths, except those that carry a tunnel.
	// With an overlay they must fit through it; with native routing
	// they must fit the device of the default route.
	if fit == 0 {
		if dev, ok := linkAt(links, route(nil)); ok && dev.Kind != "veth" {
			fit = dev.MTU
		}
	}
	for _, l := range links {
		if l.Kind != "veth" || underlays[l.Index] {
			continue
		}
		v := verdict{iface: l.Name}
		if fit > 0 {
			v.expected = fit
			v.reasons.put(reasonExceedsOverlay, l.MTU > fit)
		}
		if m, ok := peerMTU(l); ok {
			v.reasons.put(reasonDiffersFromPeer, l.MTU != m)
		}
		if cniMTU > 0 {
			v.reasons.put(reasonDiffersFromCNI, l.MTU != cniMTU)
			if v.expected == 0 {
				v.expected = cniMTU
			}
		}
		if !v.reasons.empty() {
			out = append(out, v)
		}
	}
	if f.ipv6 {
		out = belowIPv6Minimum(links, out)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].iface < out[j].iface })
	return out
}

// tunnelVerdict is a tunnel's: it must fit in exp, what its underlay
// leaves it.
func tunnelVerdict(l hostview.Link, exp int) verdict {
	v := verdict{iface: l.Name, expected: exp}
	v.reasons.put(reasonExceedsUnderlay, l.MTU > exp)
	return v
}

// linkAt is the link of an index. A search, not a map: it is asked once
// per tunnel and once for the default route's device, and a map of every
// link, built on each scrape, cost more than all the searches.
func linkAt(links []hostview.Link, index int) (hostview.Link, bool) {
	if index == 0 {
		return hostview.Link{}, false
	}
	for _, l := range links {
		if l.Index == index {
			return l, true
		}
	}
	return hostview.Link{}, false
}

// fitThrough is the overlay's fit with one more tunnel that carries f:
// the smallest of them (0: none yet).
func fitThrough(fit, f int) int {
	if fit == 0 || f < fit {
		return f
	}
	return fit
}

// wireguardFit is the largest MTU a WireGuard device can have for every
// peer it has an endpoint for, and the underlay devices it reaches them
// by. A WireGuard device names no remote of its own: each peer's packets
// go to that peer's endpoint, by the route to it, in the endpoint's
// family, so the device must fit the tightest peer: 60 bytes under its
// underlay when the endpoint is IPv4, 80 when IPv6 (one IPv6 peer over
// a 1,500 underlay makes the device's limit 1,420 however many IPv4 ones
// it has). A peer without an endpoint (one that has not yet sent a
// handshake to a device that listens only) says nothing; a device with
// none at all is not judged, as any tunnel whose underlay is unknown:
// guessing IPv6's 80 would flag every IPv4 WireGuard set to the usual
// 1,440 before its first handshake. The routes ignore the device's
// fwmark (policy routing that sends the encapsulated packets another
// way than the main table is not followed).
func wireguardFit(endpoints []net.IP, route routeLookup, links []hostview.Link) (int, []int) {
	oh := encapsulations["wireguard"]
	exp, any := 0, false
	var under []int
	for _, ep := range endpoints {
		if ep == nil || ep.IsUnspecified() {
			continue
		}
		u, ok := linkAt(links, route(ep))
		if !ok {
			continue
		}
		o := oh.v4
		if isIPv6(ep) {
			o = oh.v6
		}
		if e := u.MTU - o; !any || e < exp {
			exp, any = e, true
		}
		if !slices.Contains(under, u.Index) {
			under = append(under, u.Index)
		}
	}
	return exp, under
}

// belowIPv6Minimum judges the interfaces of a namespace that runs IPv6
// against IPv6's minimum MTU, adding to the verdicts already made: an
// interface below 1,280 has no IPv6 at all (the kernel removed it), so a
// dual-stack pod or node loses its IPv6 addresses and routes with no
// error anywhere. The interfaces already judged (tunnels, pods' veths)
// get the reason at 0 or 1; any other only while it is below, so a node
// pays a series for this only where something is wrong. Loopback and CAN
// interfaces, which carry no IPv6 by design, are left out.
func belowIPv6Minimum(links []hostview.Link, out []verdict) []verdict {
	at := make(map[string]int, len(out))
	for i, v := range out {
		at[v.iface] = i
	}
	for _, l := range links {
		if l.Kind == "can" || l.Kind == "vcan" || l.Kind == "vxcan" || l.Name == "lo" {
			continue
		}
		below := l.MTU < ipv6MinMTU
		i, ok := at[l.Name]
		if !ok {
			if !below {
				continue
			}
			i = len(out)
			out = append(out, verdict{iface: l.Name})
		}
		out[i].reasons.put(reasonBelowIPv6Min, below)
	}
	return out
}

// underlayOf finds the device a tunnel sends its encapsulated packets by:
// the device it is bound to, else the route to its remote end; and
// whether the outer packets are IPv6, by the remote end's address, else
// the local one's (a VXLAN with a local address and no remote, as
// flannel's, learns its remotes from the FDB but sends from local's
// family). A tunnel that names neither (a VXLAN or Geneve in external
// mode, whose endpoints a CNI sets per packet) is judged as IPv4.
func underlayOf(l hostview.Link, route routeLookup) (int, bool) {
	var bound int
	var remote, local net.IP
	switch t := l.Attrs.(type) {
	case *netlink.Vxlan:
		bound, remote, local = t.VtepDevIndex, t.Group, t.SrcAddr
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
	if remote != nil && !remote.IsUnspecified() {
		return bound, isIPv6(remote)
	}
	return bound, isIPv6(local) || isIPv6(remote)
}

func isIPv6(a net.IP) bool { return len(a) == net.IPv6len && a.To4() == nil }
