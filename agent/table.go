package agent

import (
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/conntrack"
	"github.com/netsonde/netsonde/collectors/dns"
	"github.com/netsonde/netsonde/collectors/drops"
	"github.com/netsonde/netsonde/collectors/ethtool"
	"github.com/netsonde/netsonde/collectors/fragments"
	"github.com/netsonde/netsonde/collectors/fsyncprobe"
	"github.com/netsonde/netsonde/collectors/fsynctrace"
	"github.com/netsonde/netsonde/collectors/mesh"
	"github.com/netsonde/netsonde/collectors/mtu"
	"github.com/netsonde/netsonde/collectors/mtucheck"
	"github.com/netsonde/netsonde/collectors/neighbour"
	"github.com/netsonde/netsonde/collectors/netdev"
	"github.com/netsonde/netsonde/collectors/pmtu"
	"github.com/netsonde/netsonde/collectors/sockets"
	"github.com/netsonde/netsonde/collectors/softnet"
	"github.com/netsonde/netsonde/collectors/tcpconnect"
	"github.com/netsonde/netsonde/collectors/tcpretrans"
)

// Collectors is the table of every collector netsonde has, one line each.
// Order does not matter: collectors start concurrently and are listed by name.
func Collectors() []collectors.Spec {
	return []collectors.Spec{
		conntrack.Spec,
		dns.Spec,
		drops.Spec,
		fsyncprobe.Spec,
		fsynctrace.Spec,
		fragments.Spec,
		tcpconnect.Spec,
		tcpretrans.Spec,
		mesh.Spec,
		mtucheck.Spec,
		pmtu.Spec,
		sockets.Spec,
		netdev.Spec,
		ethtool.Spec,
		neighbour.Spec,
		softnet.Spec,
		mtu.Spec,
	}
}
