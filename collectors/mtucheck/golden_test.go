package mtucheck

import (
	"log/slog"
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// TestGoldenMetrics: the fixture node (flannel.1 over eth0, the pod's veth
// fitting, veth4d5e6f larger than the overlay, its peer and the CNI
// config) with a GRE tunnel routed to its remote by eth0 and too large for
// it, and the CNI config of testdata/cni.
func TestGoldenMetrics(t *testing.T) {
	remote := net.ParseIP(golden.PeerNode.InternalIP.String())
	gre := hostnet.Link{Index: 7, Name: "gre1", Kind: "gre", MTU: 1480, NetNsID: -1, Up: true,
		Attrs: &netlink.Gretun{Remote: remote}}
	view := golden.Node(gre)
	routes := func(dst net.IP) int {
		if dst.Equal(remote) {
			return golden.IfEth0
		}
		return 0
	}
	deps := collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view, Clock: &golden.Clock{T: golden.Now}}
	c := &collector{deps: deps, cniDir: "testdata/cni", routes: newRouteCache(routes)}
	c.background() // reads the CNI config, routes the tunnel's remote
	golden.Check(t, c)
}
