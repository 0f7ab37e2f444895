// Package mtucheck tells when an interface's MTU does not fit what is under
// it: a tunnel larger than its underlay leaves room for, a pod interface
// larger than the overlay it routes through, an interface that differs from
// the CNI configuration. It reads the agent's live link view, so a fix
// shows on the next scrape. The active path-MTU probe is collectors/pmtu.
package mtucheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/hostview"
)

// Spec is the MTU checker's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "mtucheck",
	Help:           "MTU mismatches: tunnels vs their underlay, pod interfaces vs the overlay and the CNI config.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_interface_expected_mtu", "netsonde_mtu_mismatch", "netsonde_cni_config_mtu"},
	// Expected MTU and mismatch per checked interface.
	Budget: func(n, _ int) int { return 2*n + 16 },
	Setup:  setup,
}

var (
	expectedDesc = prometheus.NewDesc(collectors.Namespace+"_interface_expected_mtu_bytes",
		"The largest MTU that fits what is under the interface: underlay MTU minus encapsulation overhead for tunnels, what the overlay carries for pod interfaces.",
		[]string{"interface"}, nil)
	mismatchDesc = prometheus.NewDesc(collectors.Namespace+"_mtu_mismatch",
		"1 while the interface's MTU does not fit (reason: exceeds_underlay, exceeds_overlay, differs_from_cni_config, differs_from_peer, below_ipv6_minimum), 0 when it does.",
		[]string{"interface", "reason"}, nil)
	cniDesc = prometheus.NewDesc(collectors.Namespace+"_cni_config_mtu_bytes",
		"MTU declared by the node's active CNI configuration file.",
		[]string{"file"}, nil)
)

type config struct {
	cniDir        *string
	geneveOptions *int
}

func setup(app *kingpin.Application) collectors.Factory {
	c := config{
		cniDir: app.Flag("mtucheck.cni-dir", "CNI configuration directory; its first config's mtu is compared with pod interfaces.").
			Default("/etc/cni/net.d").String(),
		geneveOptions: app.Flag("mtucheck.geneve-option-bytes", "Bytes of Geneve options the CNI adds to every packet, on top of Geneve's 50 (IPv4) or 70 (IPv6) bytes; 0 when it sends none.").
			Default("0").Int(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		if deps.Net == nil {
			return nil, collectors.Down("no_netlink", errors.New("the agent has no netlink link view"))
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, collectors.Down("no_netlink", err)
		}
		if *c.geneveOptions < 0 {
			h.Close()
			return nil, collectors.Down("bad_flag", fmt.Errorf("--mtucheck.geneve-option-bytes %d: below 0", *c.geneveOptions))
		}
		wg := &wgClient{}
		col := &collector{deps: deps, cniDir: *c.cniDir, geneveOptions: *c.geneveOptions, nl: h, procNet: "/proc/sys/net",
			wg: wg.endpoints, wgClose: wg.close}
		col.routes = newRouteCache(col.route)
		// The first look is made now, so the first scrape has verdicts;
		// then link changes and a ticker keep routes and CNI current.
		col.background()
		bgCtx, stop := context.WithCancel(ctx)
		col.stop = stop
		col.done = make(chan struct{})
		go col.run(bgCtx)
		return col, nil
	}
}

type collector struct {
	deps          collectors.Deps
	cniDir        string
	geneveOptions int
	// procNet is /proc/sys/net as the agent's namespace sees it (a
	// fixture directory in tests).
	procNet string
	nl      *netlink.Handle
	routes  *routeCache
	// wg reads a WireGuard device's peers' endpoints (background only);
	// wgClose releases what it holds, after the background has stopped.
	wg      wgReader
	wgClose func()
	// wgErrs are the devices whose last read failed, with the error
	// logged, so that a failure is logged once, not every round.
	wgErrs map[string]string
	stop   context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	cni     int
	cniFile string
	ipv6    bool
	// wgEndpoints: facts.wgEndpoints as last read.
	wgEndpoints map[int][]net.IP
}

// backgroundEvery is how often routes and the CNI directory are read
// again without a link change (a route or a CNI config may change alone).
const backgroundEvery = 10 * time.Second

func (c *collector) run(ctx context.Context) {
	defer close(c.done)
	changed, unsubscribe := c.deps.Net.Subscribe()
	defer unsubscribe()
	t := time.NewTicker(backgroundEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
		c.background()
	}
}

// background does the I/O the verdicts need, off the scrape path: the CNI
// configuration, WireGuard peers' endpoints, and the routes the current
// links ask for.
func (c *collector) background() {
	mtu, file, err := cniMTU(c.cniDir)
	if err != nil {
		c.deps.Logger.Warn("CNI config unreadable", "err", err)
	}
	v6 := ipv6On(c.procNet)
	links := c.deps.Net.Links()
	var wgEps map[int][]net.IP
	if c.wg != nil {
		var errs map[string]error
		wgEps, errs = readWireGuard(links, c.wg)
		c.logWireGuard(errs)
	}
	c.mu.Lock()
	c.cni, c.cniFile, c.ipv6, c.wgEndpoints = mtu, file, v6, wgEps
	c.mu.Unlock()
	// A dry run of the check records every destination it routes now;
	// destinations only gone links asked for are dropped.
	c.routes.forget()
	check(links, c.routes.record, facts{cniMTU: mtu, wgEndpoints: wgEps}, func(hostview.Link) (int, bool) { return 0, false })
	c.routes.refresh()
}

// logWireGuard logs each device's read failure when it starts or changes
// (such a device is not judged: without CAP_NET_ADMIN, every one).
func (c *collector) logWireGuard(errs map[string]error) {
	now := make(map[string]string, len(errs))
	for name, err := range errs {
		now[name] = err.Error()
		if c.wgErrs[name] != now[name] {
			c.deps.Logger.Warn("WireGuard peers unreadable: the device's MTU is not judged", "interface", name, "err", err)
		}
	}
	c.wgErrs = now
}

// ipv6On says whether the namespace runs IPv6: the kernel has it (the
// directory exists; not so with ipv6.disable=1) and neither
// net.ipv6.conf.all nor .default disables it. Per interface there is
// nothing to read: an interface below 1,280 has lost its IPv6 settings
// with its IPv6, which is the point.
func ipv6On(procNet string) bool {
	for _, conf := range []string{"all", "default"} {
		b, err := os.ReadFile(filepath.Join(procNet, "ipv6", "conf", conf, "disable_ipv6"))
		if err != nil || strings.TrimSpace(string(b)) != "0" {
			return false
		}
	}
	return true
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	cni, cniFile, v6, wgEps := c.cni, c.cniFile, c.ipv6, c.wgEndpoints
	c.mu.Unlock()
	if cni > 0 {
		ch <- prometheus.MustNewConstMetric(cniDesc, prometheus.GaugeValue, float64(cni), cniFile)
	}
	// The far ends of veths (pods' eth0) as the host network view last
	// read them.
	f := facts{cniMTU: cni, ipv6: v6, geneveOptions: c.geneveOptions, wgEndpoints: wgEps}
	for _, v := range check(c.deps.Net.Links(), c.routes.record, f, c.deps.Net.Snapshot().PeerMTU) {
		if v.expected > 0 {
			ch <- prometheus.MustNewConstMetric(expectedDesc, prometheus.GaugeValue, float64(v.expected), v.iface)
		}
		v.reasons.each(func(reason string, bad bool) {
			val := 0.0
			if bad {
				val = 1
			}
			ch <- prometheus.MustNewConstMetric(mismatchDesc, prometheus.GaugeValue, val, v.iface, reason)
		})
	}
	return nil
}

// routeCache answers route lookups from memory on the scrape path; the
// background fills it with the kernel's answers for every destination
// asked (a route lookup is a netlink round trip).
type routeCache struct {
	lookup routeLookup
	mu     sync.Mutex
	dst    map[string]net.IP
	dev    map[string]int
}

func newRouteCache(lookup routeLookup) *routeCache {
	return &routeCache{lookup: lookup, dst: map[string]net.IP{}, dev: map[string]int{}}
}

// record answers from memory and notes dst as wanted: an unknown
// destination has no device until the next refresh.
func (r *routeCache) record(dst net.IP) int {
	k := dst.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dst[k] = dst
	return r.dev[k]
}

// refresh looks every recorded destination up again.
func (r *routeCache) refresh() {
	r.mu.Lock()
	dsts := make(map[string]net.IP, len(r.dst))
	for k, v := range r.dst {
		dsts[k] = v
	}
	r.mu.Unlock()
	dev := make(map[string]int, len(dsts))
	for k, d := range dsts {
		dev[k] = r.lookup(d)
	}
	r.mu.Lock()
	r.dev = dev
	r.mu.Unlock()
}

// forget drops every recorded destination (their last answers stay until
// the next refresh).
func (r *routeCache) forget() {
	r.mu.Lock()
	clear(r.dst)
	r.mu.Unlock()
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
	c.stop()
	<-c.done
	c.wgClose()
	c.nl.Close()
	return nil
}
