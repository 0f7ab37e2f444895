package cluster

import "slices"

// Choice remembers what a prober chose from the last node list it was
// given, so that a prober asking every round (the mesh every second by
// default) chooses again only when the list changed. On a 5,000-node
// cluster a choice walks and hashes every node and allocates a few
// hundred KB; TestNodeListMemory saw the per-round garbage hold the
// agent's steady RSS 8 MiB above a cluster without nodes. The zero value
// is ready; a Choice is not safe for concurrent use.
type Choice[T any] struct {
	nodes  []Node
	chosen T
	ok     bool
}

// Of returns choose(nodes), from memory when nodes equals the last list.
// nodes is kept, not copied: Resolver.PeerNodes hands out a read-only
// slice.
func (c *Choice[T]) Of(nodes []Node, choose func([]Node) T) T {
	if c.ok && slices.Equal(c.nodes, nodes) {
		return c.chosen
	}
	c.nodes, c.chosen, c.ok = nodes, choose(nodes), true
	return c.chosen
}
