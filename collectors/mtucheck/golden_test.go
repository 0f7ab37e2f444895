package mtucheck

import (
	"log/slog"
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
	"github.com/netsonde/netsonde/internal/hostview"
)

// TestGoldenMetrics: the fixture node (flannel.1 over eth0, the pod's veth
// fitting, veth4d5e6f larger than the overlay, its peer and the CNI
// config) with a GRE tunnel routed to its remote by eth0 and too large for
// it, the CNI config of testdata/cni, and IPv6 on (testdata/procnet),
// with a second NIC, eth1, at 9,000 for IPv6 tunnels (so the overlay's
// fit stays flannel's 1,450): a VXLAN to an IPv6 remote routed by eth1 at
// 9,000, above the 8,930 an IPv6 underlay leaves; a Geneve bound to eth1
// at 8,922 with 8 bytes of options (9,000 - 70 - 8: fits exactly); and a
// dummy at 1,200, below IPv6's minimum.
func TestGoldenMetrics(t *testing.T) {
	remote := net.ParseIP(golden.PeerNode.InternalIP.String())
	remote6 := net.ParseIP("2001:db8::12")
	gre := hostview.Link{Index: 7, Name: "gre1", Kind: "gre", MTU: 1480, NetNsID: -1, Up: true,
		Attrs: &netlink.Gretun{Remote: remote}}
	eth1 := hostview.Link{Index: 11, Name: "eth1", Kind: "device", MTU: 9000, NetNsID: -1, Up: true}
	vx6 := hostview.Link{Index: 8, Name: "vxlan6", Kind: "vxlan", MTU: 9000, NetNsID: -1, Up: true,
		Attrs: &netlink.Vxlan{Group: remote6}}
	gnv := hostview.Link{Index: 9, Name: "genev6", Kind: "geneve", MTU: 8922, ParentIndex: eth1.Index, NetNsID: -1, Up: true,
		Attrs: &netlink.Geneve{Remote: remote6}}
	low := hostview.Link{Index: 10, Name: "dummy0", Kind: "dummy", MTU: 1200, NetNsID: -1, Up: true}
	view := golden.Node(gre, eth1, vx6, gnv, low)
	routes := func(dst net.IP) int {
		switch {
		case dst.Equal(remote):
			return golden.IfEth0
		case dst.Equal(remote6):
			return eth1.Index
		}
		return 0
	}
	deps := collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view, Clock: &golden.Clock{T: golden.Now}}
	c := &collector{deps: deps, cniDir: "testdata/cni", procNet: "testdata/procnet", geneveOptions: 8, routes: newRouteCache(routes)}
	c.background() // reads the CNI config, routes the tunnel's remote
	golden.Check(t, c)
}
