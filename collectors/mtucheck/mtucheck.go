// Package mtucheck tells when an interface's MTU does not fit what is under
// it: a tunnel larger than its underlay leaves room for, a pod interface
// larger than the overlay it routes through, an interface that differs from
// the CNI configuration. It reads the agent's live link view, so a fix
// shows on the next scrape. The active path-MTU probe is collectors/pmtu.
package mtucheck

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/collectors"
)

// Spec is the MTU checker's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "mtucheck",
	Help:           "MTU mismatches: tunnels vs their underlay, pod interfaces vs the overlay and the CNI config.",
	DefaultEnabled: true,
	Setup:          setup,
}

var (
	expectedDesc = prometheus.NewDesc(collectors.Namespace+"_interface_expected_mtu_bytes",
		"The largest MTU that fits what is under the interface: underlay MTU minus encapsulation overhead for tunnels, what the overlay carries for pod interfaces.",
		[]string{"interface"}, nil)
	mismatchDesc = prometheus.NewDesc(collectors.Namespace+"_mtu_mismatch",
		"1 while the interface's MTU does not fit (reason: exceeds_underlay, exceeds_overlay, differs_from_cni_config, differs_from_peer), 0 when it does.",
		[]string{"interface", "reason"}, nil)
	cniDesc = prometheus.NewDesc(collectors.Namespace+"_cni_config_mtu_bytes",
		"MTU declared by the node's active CNI configuration file.",
		[]string{"file"}, nil)
)

type config struct {
	cniDir    *string
	peerEvery *time.Duration
}

func setup(app *kingpin.Application) collectors.Factory {
	c := config{
		cniDir: app.Flag("mtucheck.cni-dir", "CNI configuration directory; its first config's mtu is compared with pod interfaces.").
			Default("/etc/cni/net.d").String(),
		peerEvery: app.Flag("mtucheck.peer-interval", "How often the far ends of veths in other namespaces (pods' eth0) are read, for differs_from_peer.").
			Default("30s").Duration(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		if deps.Links == nil {
			return nil, collectors.Down("no_netlink", errors.New("the agent has no netlink link view"))
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, collectors.Down("no_netlink", err)
		}
		col := &collector{deps: deps, cniDir: *c.cniDir, nl: h,
			peers: &peerMTUs{links: deps.Links, procPath: deps.ProcPath, every: *c.peerEvery}}
		peerCtx, stopPeers := context.WithCancel(ctx)
		col.stopPeers = stopPeers
		go col.peers.run(peerCtx)
		return col, nil
	}
}

type collector struct {
	deps   collectors.Deps
	cniDir string
	nl     *netlink.Handle
	peers  *peerMTUs
	// stopPeers ends the peer refresher.
	stopPeers context.CancelFunc

	mu      sync.Mutex
	cniRead time.Time
	cni     int
	cniFile string
}

// cniEvery bounds how often the CNI directory is re-read: a few small
// files, but I/O all the same.
const cniEvery = 10 * time.Second

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	if time.Since(c.cniRead) > cniEvery {
		mtu, file, err := cniMTU(c.cniDir)
		if err != nil {
			c.deps.Logger.Warn("CNI config unreadable", "err", err)
		}
		c.cni, c.cniFile, c.cniRead = mtu, file, time.Now()
	}
	cni, cniFile := c.cni, c.cniFile
	c.mu.Unlock()
	if cni > 0 {
		ch <- prometheus.MustNewConstMetric(cniDesc, prometheus.GaugeValue, float64(cni), cniFile)
	}

	for _, v := range check(c.deps.Links.Links(), c.route, cni, c.peers.of) {
		if v.expected > 0 {
			ch <- prometheus.MustNewConstMetric(expectedDesc, prometheus.GaugeValue, float64(v.expected), v.iface)
		}
		for reason, bad := range v.reasons {
			val := 0.0
			if bad {
				val = 1
			}
			ch <- prometheus.MustNewConstMetric(mismatchDesc, prometheus.GaugeValue, val, v.iface, reason)
		}
	}
	return nil
}

// route asks the kernel which device a packet to dst leaves by (nil: the
// default route's device).
func (c *collector) route(dst net.IP) int {
	if dst == nil {
		routes, err := c.nl.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
		if err != nil {
			return 0
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				return r.LinkIndex
			}
		}
		return 0
	}
	routes, err := c.nl.RouteGet(dst)
	if err != nil || len(routes) == 0 {
		return 0
	}
	return routes[0].LinkIndex
}

func (c *collector) Close() error {
	c.stopPeers()
	c.nl.Close()
	return nil
}
