package mesh

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/netsonde/netsonde/cluster"
)

// Peer is a node to probe, at its underlay address and, when it has one,
// through the overlay.
type Peer struct {
	Name     string
	Underlay netip.Addr
	Overlay  netip.Addr // invalid: no overlay path to probe
}

// ParsePeer reads --mesh.peer=NAME=UNDERLAY_IP[,OVERLAY_IP].
func ParsePeer(s string) (Peer, error) {
	name, addrs, ok := strings.Cut(s, "=")
	if !ok || name == "" || addrs == "" {
		return Peer{}, fmt.Errorf("--mesh.peer %q: want NAME=UNDERLAY_IP[,OVERLAY_IP]", s)
	}
	under, over, hasOver := strings.Cut(addrs, ",")
	p := Peer{Name: name}
	var err error
	if p.Underlay, err = netip.ParseAddr(under); err != nil {
		return Peer{}, fmt.Errorf("--mesh.peer %q: underlay: %w", s, err)
	}
	if hasOver {
		if p.Overlay, err = netip.ParseAddr(over); err != nil {
			return Peer{}, fmt.Errorf("--mesh.peer %q: overlay: %w", s, err)
		}
	}
	return p, nil
}

// FromNodes turns the cluster's node list into peers, one per node name
// (a dual-stack node is listed once per InternalIP: IPv4 is preferred, as
// the address kubelet reports first on most clusters).
func FromNodes(nodes []cluster.Node) []Peer {
	byName := map[string]*Peer{}
	var out []Peer
	for _, n := range nodes {
		p, ok := byName[n.Name]
		if !ok {
			out = append(out, Peer{Name: n.Name, Underlay: n.InternalIP.Unmap(), Overlay: n.OverlayIP.Unmap()})
			byName[n.Name] = &out[len(out)-1]
			continue
		}
		if !p.Underlay.Is4() && n.InternalIP.Unmap().Is4() {
			p.Underlay = n.InternalIP.Unmap()
		}
		if !p.Overlay.IsValid() {
			p.Overlay = n.OverlayIP.Unmap()
		}
	}
	return out
}

// Select returns at most k of peers (never self), chosen by rendezvous
// hashing from self's point of view (cluster.Rendezvous, which the
// path-MTU probe uses too), in name order.
func Select(self string, peers []Peer, k int) []Peer {
	return cluster.Rendezvous(self, peers, func(p Peer) string { return p.Name }, k)
}
