package cluster

import (
	"cmp"
	"slices"
)

// Rendezvous returns at most k of peers (never self), chosen by rendezvous
// (highest random weight) hashing from self's point of view, in name
// order; name gives a peer's node name. Every per-peer prober (the mesh,
// the path-MTU probe) selects with it, so that each node's cost stays
// O(k) at any fleet size while the cluster's selections together cover
// every node.
//
// Each node ranks every other by score and keeps the top k. A node
// joining or leaving moves only the sets that rank it in their top k, and
// only by that one node; since the scores are independent per prober,
// every node is some prober's top k with overwhelming probability, and
// each is picked by about k others. It costs one hash per peer and keeps
// only the best k as it goes, so it runs every probe round without a
// sorted copy of the node list. A name listed twice counts once (the
// first).
func Rendezvous[P any](self string, peers []P, name func(P) string, k int) []P {
	type ranked struct {
		p    P
		name string
		s    uint64
	}
	if k <= 0 {
		return nil
	}
	// top holds the best so far, best first; better means a higher
	// score, ties broken by name so the choice is a function of the set.
	better := func(a, b ranked) bool {
		return a.s > b.s || (a.s == b.s && a.name < b.name)
	}
	top := make([]ranked, 0, k+1)
	for _, p := range peers {
		n := name(p)
		if n == self {
			continue
		}
		c := ranked{p, n, score(self, n)}
		if len(top) == k && !better(c, top[k-1]) {
			continue
		}
		i := len(top)
		for i > 0 && better(c, top[i-1]) {
			i--
		}
		if i > 0 && top[i-1].name == c.name {
			continue // listed twice
		}
		top = slices.Insert(top, i, c)
		if len(top) > k {
			top = top[:k]
		}
	}
	slices.SortFunc(top, func(a, b ranked) int { return cmp.Compare(a.name, b.name) })
	out := make([]P, len(top))
	for i := range top {
		out[i] = top[i].p
	}
	return out
}

// score is the rendezvous hash of a node pair.
func score(self, peer string) uint64 {
	// FNV-1a over "self\x00peer", then splitmix64's finaliser: FNV alone
	// leaves names that differ in their last byte too close together.
	h := uint64(14695981039346656037)
	for i := 0; i < len(self); i++ {
		h = (h ^ uint64(self[i])) * 1099511628211
	}
	h *= 1099511628211 // FNV-1a of the separator byte 0 (h ^ 0 is h)
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
