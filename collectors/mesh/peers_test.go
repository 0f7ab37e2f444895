package mesh

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/netsonde/netsonde/cluster"
)

func synthetic(n int) []Peer {
	out := make([]Peer, n)
	for i := range out {
		out[i] = Peer{Name: fmt.Sprintf("ip-10-%d-%d-%d.ec2.internal", i/65536, i/256%256, i%256)}
	}
	return out
}

func names(ps []Peer) map[string]bool {
	m := map[string]bool{}
	for _, p := range ps {
		m[p.Name] = true
	}
	return m
}

// With 5,000 nodes and k=16: every node probes exactly 16 others (never
// itself), every node is probed by someone, and no node is probed by more
// than 3k (the load on a node stays O(k), not O(N)).
func TestSelectBoundsAt5000Nodes(t *testing.T) {
	const n, k = 5000, 16
	nodes := synthetic(n)
	start := time.Now()
	probedBy := map[string]int{}
	for _, self := range nodes {
		sel := Select(self.Name, nodes, k)
		if len(sel) != k {
			t.Fatalf("%s selected %d peers, want %d", self.Name, len(sel), k)
		}
		for _, p := range sel {
			if p.Name == self.Name {
				t.Fatalf("%s selected itself", self.Name)
			}
			probedBy[p.Name]++
		}
	}
	t.Logf("5,000 selections in %v", time.Since(start))
	minIn, maxIn := n, 0
	for _, p := range nodes {
		c := probedBy[p.Name]
		minIn, maxIn = min(minIn, c), max(maxIn, c)
	}
	t.Logf("probed by: min %d, max %d (mean %d)", minIn, maxIn, k)
	if minIn == 0 {
		t.Errorf("a node is probed by nobody")
	}
	if maxIn > 3*k {
		t.Errorf("a node is probed by %d nodes, want at most %d", maxIn, 3*k)
	}
}

// A node leaving changes only the sets that held it, each by one peer; a
// node joining enters at most one slot of each set. About k sets move
// either way.
func TestSelectStableUnderChurn(t *testing.T) {
	const n, k = 5000, 16
	nodes := synthetic(n)
	joined := append(append([]Peer(nil), nodes...), Peer{Name: "new-node"})
	gone := nodes[1:] // nodes[0] leaves
	movedJoin, movedLeave := 0, 0
	for _, self := range nodes[1:] {
		base := names(Select(self.Name, nodes, k))
		j := names(Select(self.Name, joined, k))
		diff := 0
		for name := range j {
			if !base[name] {
				diff++
				if name != "new-node" {
					t.Fatalf("%s: %s entered when new-node joined", self.Name, name)
				}
			}
		}
		movedJoin += diff
		l := names(Select(self.Name, gone, k))
		diff = 0
		for name := range base {
			if !l[name] {
				diff++
				if name != nodes[0].Name {
					t.Fatalf("%s: %s left when %s left", self.Name, name, nodes[0].Name)
				}
			}
		}
		if len(l) != k {
			t.Fatalf("%s: %d peers after a node left", self.Name, len(l))
		}
		movedLeave += diff
	}
	t.Logf("sets changed: %d when one node joined, %d when one left (k=%d)", movedJoin, movedLeave, k)
	if movedJoin > 3*k || movedLeave > 3*k {
		t.Errorf("too many sets moved: %d join, %d leave", movedJoin, movedLeave)
	}
}

// Fewer nodes than k: all of them. The order of the node list does not
// matter.
func TestSelectSmallAndOrderFree(t *testing.T) {
	nodes := synthetic(5)
	if got := Select(nodes[0].Name, nodes, 16); len(got) != 4 {
		t.Fatalf("%d peers of 5 nodes, want 4", len(got))
	}
	many := synthetic(100)
	rev := make([]Peer, len(many))
	for i := range many {
		rev[len(many)-1-i] = many[i]
	}
	a, b := Select("x", many, 16), Select("x", rev, 16)
	for i := range a {
		if a[i].Name != b[i].Name {
			t.Fatalf("selection depends on list order: %v vs %v", a[i].Name, b[i].Name)
		}
	}
}

func TestParsePeer(t *testing.T) {
	p, err := ParsePeer("b=198.18.97.2,198.18.98.2")
	if err != nil || p.Name != "b" || p.Underlay != netip.MustParseAddr("198.18.97.2") || p.Overlay != netip.MustParseAddr("198.18.98.2") {
		t.Fatalf("%+v %v", p, err)
	}
	p, err = ParsePeer("c=fd00:5e::2")
	if err != nil || p.Overlay.IsValid() || !p.Underlay.Is6() {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{"", "b", "b=", "=1.2.3.4", "b=nope", "b=1.2.3.4,nope"} {
		if _, err := ParsePeer(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFromNodesOnePerName(t *testing.T) {
	got := FromNodes([]cluster.Node{
		{Name: "a", InternalIP: netip.MustParseAddr("fd00:5e::1")},
		{Name: "a", InternalIP: netip.MustParseAddr("198.18.0.1"), OverlayIP: netip.MustParseAddr("10.244.1.1")},
		{Name: "b", InternalIP: netip.MustParseAddr("198.18.0.2")},
	})
	if len(got) != 2 || got[0].Underlay != netip.MustParseAddr("198.18.0.1") || got[0].Overlay != netip.MustParseAddr("10.244.1.1") || got[1].Overlay.IsValid() {
		t.Fatalf("%+v", got)
	}
}
