package cluster

import (
	"fmt"
	"net/netip"
	"testing"
)

// A node listed twice (kubelet lists a dual-stack node once per
// InternalIP) is chosen once, as first listed, and never self: of 40
// nodes, each listed twice with two addresses, a node chooses 16 distinct
// peers, each at its first address.
func TestRendezvousNameListedTwice(t *testing.T) {
	var nodes []Node
	for i := range 40 {
		name := fmt.Sprintf("node-%d", i)
		nodes = append(nodes,
			Node{Name: name, InternalIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})},
			Node{Name: name, InternalIP: netip.AddrFrom4([4]byte{198, 18, 1, byte(i)})})
	}
	got := Rendezvous("node-0", nodes, func(n Node) string { return n.Name }, 16)
	if len(got) != 16 {
		t.Fatalf("%d peers, want 16", len(got))
	}
	seen := map[string]bool{}
	for _, n := range got {
		if n.Name == "node-0" || seen[n.Name] || n.InternalIP.As4()[2] != 0 {
			t.Fatalf("chose %v (self node-0, already chosen %v, or not its first address)", n, seen[n.Name])
		}
		seen[n.Name] = true
	}
	if Rendezvous("node-0", nodes, func(n Node) string { return n.Name }, 0) != nil {
		t.Error("k=0 chose peers")
	}
}
