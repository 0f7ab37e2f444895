package mesh

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
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

// score is the rendezvous (highest random weight) hash of a node pair:
// each node ranks every other by it and probes the top k. A node joining
// or leaving moves only the sets that rank it in their top k, and only
// by that one node; since the scores are independent per prober, every
// node is some prober's top-k with overwhelming probability, and each is
// probed by about k others.
func score(self, peer string) uint64 {
	// FNV-1a over "self\x00peer", then splitmix64's finaliser: FNV alone
	// leaves names that differ in their last byte too close together.
	h := uint64(14695981039346656037)
	for i := 0; i < len(self); i++ {
		h = (h ^ uint64(self[i])) * 1099511628211
	}
	h = (h ^ 0) * 1099511628211
	for i := 0; i < len(peer); i++ {
		h = (h ^ uint64(peer[i])) * 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Select returns at most k of peers (never self), chosen by rendezvous
// hashing from self's point of view, in name order. It costs one hash per
// peer and keeps only the best k as it goes, so it runs every probe round
// without a sorted copy of the node list.
func Select(self string, peers []Peer, k int) []Peer {
	type ranked struct {
		p Peer
		s uint64
	}
	if k <= 0 {
		return nil
	}
	// top holds the best so far, best first; better means a higher
	// score, ties broken by name so the choice is a function of the set.
	better := func(a, b ranked) bool {
		return a.s > b.s || (a.s == b.s && a.p.Name < b.p.Name)
	}
	top := make([]ranked, 0, k+1)
	for _, p := range peers {
		if p.Name == self {
			continue
		}
		c := ranked{p, score(self, p.Name)}
		if len(top) == k && !better(c, top[k-1]) {
			continue
		}
		i := len(top)
		for i > 0 && better(c, top[i-1]) {
			i--
		}
		if i > 0 && top[i-1].p.Name == c.p.Name {
			continue // listed twice
		}
		top = slices.Insert(top, i, c)
		if len(top) > k {
			top = top[:k]
		}
	}
	out := make([]Peer, len(top))
	for i := range top {
		out[i] = top[i].p
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
