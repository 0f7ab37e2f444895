package agent_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors/mesh"
	"github.com/netsonde/netsonde/collectors/pmtu"
)

// The path-MTU probe and the mesh choose the same peer nodes from the same
// node list (here, where collectors may meet, each against the other's own
// code): 1,000 nodes, some dual-stack and listed once per address with
// IPv6 first, some IPv6-only, each node choosing 16 (and 1, 3, 40) from
// its point of view. The path-MTU probe takes each chosen node at its
// IPv4 address, the mesh's underlay, and at its IPv6 one: k nodes, k plus
// the dual-stack and IPv6-only ones' IPv6 addresses.
func TestPMTUPeersAreMeshPeers(t *testing.T) {
	var nodes []cluster.Node
	v6 := map[string]netip.Addr{}
	for i := range 1000 {
		name := fmt.Sprintf("ip-10-0-%d-%d.ec2.internal", i/256, i%256)
		v4 := netip.AddrFrom4([4]byte{198, 18, byte(i / 256), byte(i % 256)})
		if i%5 == 0 || i%7 == 0 { // dual-stack (kubelet may list IPv6 first) or IPv6-only
			v6[name] = netip.MustParseAddr(fmt.Sprintf("fd00:5e::%x", i))
			nodes = append(nodes, cluster.Node{Name: name, InternalIP: v6[name]})
		}
		if i%7 != 0 || i%5 == 0 {
			nodes = append(nodes, cluster.Node{Name: name, InternalIP: v4})
		}
	}
	names := func(n int, name func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = name(i)
		}
		return out
	}
	compared := 0
	for i, self := range nodes {
		ks := []int{16}
		if i%97 == 0 {
			ks = append(ks, 1, 3, 40)
		}
		for _, k := range ks {
			m := mesh.Select(self.Name, mesh.FromNodes(nodes), k)
			p := pmtu.Peers(self.Name, nodes, k)
			mn := names(len(m), func(i int) string { return m[i].Name })
			pn := slices.Compact(names(len(p), func(i int) string { return p[i].Name }))
			if !slices.Equal(mn, pn) {
				t.Fatalf("%s, k=%d: mesh probes %v, pmtu %v", self.Name, k, mn, pn)
			}
			if len(pn) != k {
				t.Fatalf("%s, k=%d: %d peers", self.Name, k, len(pn))
			}
			// Per node, in the mesh's order: its IPv4 address (the
			// mesh's underlay) if it has one, then its IPv6 one.
			var want []netip.Addr
			for _, mp := range m {
				if mp.Underlay.Is4() {
					want = append(want, mp.Underlay)
				}
				if a, ok := v6[mp.Name]; ok {
					want = append(want, a)
				}
			}
			got := make([]netip.Addr, len(p))
			for j := range p {
				got[j] = p[j].InternalIP
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s, k=%d: pmtu probes %v, want %v", self.Name, k, got, want)
			}
			compared++
		}
	}
	t.Logf("%d selections compared", compared)
}
