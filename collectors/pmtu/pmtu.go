// Package pmtu probes the path MTU to chosen targets and to a bounded set
// of the cluster's other nodes, tracepath-style, over IPv4 and IPv6, and
// flags PMTU black holes: probes larger than the path that vanish with no
// ICMP "fragmentation needed" (ICMPv6 "packet too big") back. The peer
// nodes are chosen by rendezvous hashing, as the mesh chooses its own
// (cluster.Rendezvous): each node probes at most --pmtu.max-peers of them,
// at one address per family, and the cluster's probes together still
// reach every node.
package pmtu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
)

// Spec is the path-MTU prober's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "pmtu",
	Help:           "Active path-MTU probes to --pmtu.target and a bounded set of peer nodes (rendezvous hashing); PMTU black holes.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_path_mtu", "netsonde_pmtu_"},
	// Four per target and the targets gauge, at the defaults: no
	// --pmtu.target and --pmtu.max-peers dual-stack peer nodes, each
	// probed at its IPv4 and its IPv6 address (half that on a
	// single-stack cluster). Each --pmtu.target adds four, as does each
	// peer address above the default.
	Budget: func(_, _ int) int { return 4*2*DefaultMaxPeers + 1 },
	Setup:  setup,
}

var (
	pathMTUDesc = prometheus.NewDesc(collectors.Namespace+"_path_mtu_bytes",
		"Largest IP packet, in bytes, that crossed to the target unfragmented in the last probe run (IPv4: tracepath-style UDP probes with DF set; IPv6: ICMPv6 echo with IPV6_DONTFRAG).",
		[]string{"target"}, nil)
	blackholeDesc = prometheus.NewDesc(collectors.Namespace+"_path_mtu_blackhole",
		"1 when probes larger than the path MTU vanished and no ICMP fragmentation-needed (ICMPv6 packet-too-big) came back: a PMTU black hole.",
		[]string{"target"}, nil)
	probesDesc = prometheus.NewDesc(collectors.Namespace+"_path_mtu_probes_total",
		"Probe packets sent to the target.", []string{"target"}, nil)
	probeTimeDesc = prometheus.NewDesc(collectors.Namespace+"_path_mtu_probe_timestamp_seconds",
		"When the last probe run to the target finished (Unix time).", []string{"target"}, nil)
	targetsDesc = prometheus.NewDesc(collectors.Namespace+"_pmtu_targets",
		"Targets a path-MTU round probes: --pmtu.target and at most --pmtu.max-peers peer nodes, at one address per family each.", nil, nil)
)

// DefaultMaxPeers is --pmtu.max-peers' default, the mesh's too: 16 peers
// probed per node, each node probed by about 16 others.
const DefaultMaxPeers = 16

// Probing budget. Each run sends at most maxProbes packets to a target, one
// every --pmtu.gap, and a run starts every --pmtu.interval: with the
// defaults, at most 16 packets per target per 5 minutes, of at most the
// interface MTU each. minProbe4 and minProbe6 are the minimum every link
// carries (IPv4, RFC 791: 576; IPv6, RFC 8200: 1280), below which there is
// nothing to learn.
const (
	maxProbes = 16
	minProbe4 = 576
	minProbe6 = 1280
	probePort = 33434 // traceroute's: nothing listens there, so arrival answers port unreachable
)

// minProbe is the smallest packet every link to dst carries.
func minProbe(dst netip.Addr) int {
	if dst.Is6() {
		return minProbe6
	}
	return minProbe4
}

type pmtuConfig struct {
	targets  *[]string
	maxPeers *int
	interval *time.Duration
	gap      *time.Duration
	timeout  *time.Duration
}

func setup(app *kingpin.Application) collectors.Factory {
	c := pmtuConfig{
		targets: app.Flag("pmtu.target", "IPv4 or IPv6 address to probe the path MTU to (repeatable); peer nodes from the cluster are added (--pmtu.max-peers).").Strings(),
		maxPeers: app.Flag("pmtu.max-peers", "Peer nodes each node probes at most, chosen by rendezvous hashing over the node list as the mesh chooses its peers; a dual-stack node counts once and is probed at its IPv4 and its IPv6 InternalIP (so up to twice as many targets); 0 probes --pmtu.target only.").
			Default(fmt.Sprint(DefaultMaxPeers)).Int(),
		interval: app.Flag("pmtu.interval", "How often to probe each target.").
			Default("5m").Duration(),
		gap: app.Flag("pmtu.gap", "Pause between two probes of one run. Hosts rate-limit ICMP errors to about one per second after a burst of six, so shorter gaps can make answers look lost.").
			Default("1s").Duration(),
		timeout: app.Flag("pmtu.timeout", "How long to wait for a probe's answer before counting it lost.").
			Default("1s").Duration(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		p, err := startProber(ctx, deps, c)
		if err != nil {
			return nil, collectors.Down("bad_flag", err)
		}
		return p, nil
	}
}

type pathResult struct {
	pmtu      int
	blackhole bool
	probes    uint64
	finished  time.Time
}

type prober struct {
	deps   collectors.Deps
	cfg    pmtuConfig
	self   string
	static []netip.Addr
	// chosen is the loop's own: the peers picked from the last node list.
	chosen cluster.Choice[[]cluster.Node]

	mu      sync.Mutex
	results map[netip.Addr]*pathResult
	ntarget int // targets of the current round

	cancel context.CancelFunc
	done   chan struct{}
}

func startProber(ctx context.Context, deps collectors.Deps, cfg pmtuConfig) (*prober, error) {
	p := &prober{deps: deps, cfg: cfg, self: deps.NodeName, results: map[netip.Addr]*pathResult{}, done: make(chan struct{})}
	if p.self == "" {
		p.self, _ = os.Hostname() // as the mesh does: the node's name is its hostname on most clusters
	}
	for _, t := range *cfg.targets {
		a, err := netip.ParseAddr(t)
		if err != nil {
			return nil, fmt.Errorf("--pmtu.target %q: not an IPv4 or IPv6 address", t)
		}
		if !probeable(a) {
			// A link-local address needs a zone, which a label would
			// then carry; multicast and the like have no path MTU.
			return nil, fmt.Errorf("--pmtu.target %q: not a unicast address a node can route to", t)
		}
		p.static = append(p.static, a.Unmap())
	}
	if *cfg.maxPeers < 0 {
		return nil, fmt.Errorf("--pmtu.max-peers %d: below 0", *cfg.maxPeers)
	}
	if *cfg.interval < time.Second {
		return nil, fmt.Errorf("--pmtu.interval %v: below 1s", *cfg.interval)
	}
	ctx, p.cancel = context.WithCancel(ctx)
	go p.loop(ctx)
	return p, nil
}

// Peers returns the peer addresses self probes: at most k nodes, chosen
// by rendezvous hashing by name among the nodes that have an address to
// probe, exactly as the mesh chooses its peers with --mesh.max-peers=k, so
// one node's two probers look at the same peers. Each chosen node is
// probed at its first IPv4 and its first IPv6 InternalIP (a node lists
// one per family on a dual-stack cluster): a path can be fine over one
// family and a black hole over the other, and IPv6, whose routers never
// fragment, is where black holes hurt most. So --pmtu.max-peers counts
// nodes, not addresses: the targets are at most 2·k, and every node is
// still probed by about k others over each of its families. The result
// is in name order, IPv4 before IPv6, one cluster.Node per address.
func Peers(self string, nodes []cluster.Node, k int) []cluster.Node {
	type peer struct {
		name   string
		v4, v6 cluster.Node
	}
	byName := map[string]int{}
	var all []peer
	for _, n := range nodes {
		a := n.InternalIP.Unmap()
		if !probeable(a) {
			continue
		}
		n.InternalIP = a
		i, ok := byName[n.Name]
		if !ok {
			i = len(all)
			byName[n.Name] = i
			all = append(all, peer{name: n.Name})
		}
		switch p := &all[i]; {
		case a.Is4() && !p.v4.InternalIP.IsValid():
			p.v4 = n
		case a.Is6() && !p.v6.InternalIP.IsValid():
			p.v6 = n
		}
	}
	var out []cluster.Node
	for _, p := range cluster.Rendezvous(self, all, func(p peer) string { return p.name }, k) {
		for _, n := range []cluster.Node{p.v4, p.v6} {
			if n.InternalIP.IsValid() {
				out = append(out, n)
			}
		}
	}
	return out
}

// probeable says whether a can be a target: any IPv4 address (as
// before IPv6 came), an IPv6 unicast address but a link-local one, which
// would need a zone (and the zone would end up in the target label).
func probeable(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is4() {
		return true
	}
	return a.Is6() && a.Zone() == "" && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLinkLocalUnicast()
}

// targets are the --pmtu.target addresses, then the chosen peers'.
func (p *prober) targets() []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range p.static {
		add(a)
	}
	peers := p.chosen.Of(p.deps.Pods.PeerNodes(*p.cfg.maxPeers), func(nodes []cluster.Node) []cluster.Node {
		return Peers(p.self, nodes, *p.cfg.maxPeers)
	})
	for _, n := range peers {
		add(n.InternalIP)
	}
	return out
}

// loop probes every target once per interval, one target after another,
// off the scrape path.
func (p *prober) loop(ctx context.Context) {
	defer close(p.done)
	for {
		targets := p.targets()
		live := map[netip.Addr]bool{}
		for _, t := range targets {
			live[t] = true
		}
		// A target no longer chosen (a node that left the cluster, or
		// one that another node's arrival pushed out of the top
		// --pmtu.max-peers) takes its series with it now, not after a
		// round that can take minutes: no more targets have series than
		// netsonde_pmtu_targets says.
		p.mu.Lock()
		p.ntarget = len(targets)
		for t := range p.results {
			if !live[t] {
				delete(p.results, t)
			}
		}
		p.mu.Unlock()
		for _, t := range targets {
			res := p.run(ctx, t)
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			prev := p.results[t]
			if prev != nil {
				res.probes += prev.probes
			}
			p.results[t] = res
			p.mu.Unlock()
			p.deps.Logger.Debug("path MTU probed", "target", t, "pmtu", res.pmtu, "blackhole", res.blackhole)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*p.cfg.interval):
		}
	}
}

type outcome int

const (
	passed     outcome = iota // the target answered (port unreachable)
	fragNeeded                // a router said the packet is too big
	lost                      // no answer within the timeout
	tooBig                    // larger than the local interface allows
)

// run finds the path MTU to dst the way tracepath does, with a bounded
// binary search: start at the outgoing interface's MTU; a "fragmentation
// needed" names the next size to try; a probe that vanishes bounds the
// search from above without an ICMP, which is the mark of a black hole.
func (p *prober) run(ctx context.Context, dst netip.Addr) *pathResult {
	res := &pathResult{}
	defer func() { res.finished = time.Now() }()
	hiFail := firstHopMTU(dst) + 1 // smallest size known not to pass
	lo := 0                        // largest size known to pass
	cand := hiFail - 1
	floor := minProbe(dst)
	lostWithoutICMP, sawICMP := false, false
	told := 0 // the MTU the last "fragmentation needed" named
	for res.probes < maxProbes && cand > lo && cand < hiFail {
		if res.probes > 0 {
			select {
			case <-ctx.Done():
				return res
			case <-time.After(*p.cfg.gap):
			}
		}
		o, mtu, err := probe(dst, cand, *p.cfg.timeout)
		if err != nil {
			// Nothing was sent (no ICMPv6 socket: no NET_RAW and no
			// ping_group_range for the agent): say so, rather than
			// count probes that never left as lost.
			p.deps.Logger.Warn("path MTU: cannot probe", "target", dst, "err", err)
			return res
		}
		if o != tooBig {
			res.probes++
		}
		switch o {
		case passed:
			lo = cand
			if lo == told {
				// A router named this size as its limit and it
				// crossed: nothing larger will.
				hiFail = lo + 1
			}
			cand = (lo + hiFail) / 2
		case fragNeeded:
			sawICMP = true
			hiFail, told = cand, mtu
			if mtu > lo && mtu < cand {
				cand = mtu
			} else {
				cand = (max(lo, floor) + hiFail) / 2
			}
		case lost, tooBig:
			if o == lost {
				lostWithoutICMP = true
			}
			hiFail = cand
			cand = (max(lo, floor) + hiFail) / 2
		}
		if hiFail-lo <= 1 {
			break
		}
	}
	res.pmtu = lo
	res.blackhole = lo > 0 && lostWithoutICMP && !sawICMP
	return res
}

// firstHopMTU is the MTU of the route to dst (the interface's, or a route
// MTU), as the kernel reports it for a connected socket before any
// path-MTU learning: IP_PMTUDISC_PROBE (IPV6_PMTUDISC_PROBE) ignores
// learned values.
func firstHopMTU(dst netip.Addr) int {
	fd, err := dial(dst)
	if err != nil {
		return 1500
	}
	defer unix.Close(fd)
	level, opt := unix.IPPROTO_IP, unix.IP_MTU
	if dst.Is6() {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_MTU
	}
	mtu, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil || mtu <= 0 {
		return 1500
	}
	// A cached PMTU exception lowers IP_MTU; the device's MTU is the
	// right start, so read it from the route's device instead.
	if dev := routeDeviceMTU(dst); dev > mtu {
		return dev
	}
	return mtu
}

func routeDeviceMTU(dst netip.Addr) int {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0
	}
	fd, err := dial(dst)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	var local netip.Addr
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrFrom4(a.Addr)
	case *unix.SockaddrInet6:
		local = netip.AddrFrom16(a.Addr)
	default:
		return 0
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == local {
				return ifc.MTU
			}
		}
	}
	return 0
}

// dial returns a UDP socket connected to dst's probe port, of dst's
// family: the kernel's route (and its MTU) to dst, and the IPv4 probe.
func dial(dst netip.Addr) (int, error) {
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: dst.As16(), Port: probePort}
	if dst.Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Addr: dst.As4(), Port: probePort}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// probe sends one packet of size bytes to dst and tells what became of
// it; an error means it could not be sent at all.
func probe(dst netip.Addr, size int, timeout time.Duration) (outcome, int, error) {
	if dst.Is6() {
		return probe6(dst, size, timeout)
	}
	o, mtu := probe4(dst, size, timeout)
	return o, mtu, nil
}

// probe4 sends one UDP datagram that makes an IPv4 packet of size bytes,
// with DF set, from a fresh socket (so no answer to an earlier probe is
// mistaken for this one's), and reads its fate from the error queue.
func probe4(dst netip.Addr, size int, timeout time.Duration) (outcome, int) {
	fd, err := dial(dst)
	if err != nil {
		return lost, 0
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil {
		return lost, 0
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
		return lost, 0
	}
	payload := make([]byte, size-28) // IPv4 20 + UDP 8
	if _, err := unix.Write(fd, payload); err != nil {
		if errors.Is(err, unix.EMSGSIZE) {
			return tooBig, 0
		}
		return lost, 0
	}
	deadline := time.Now().Add(timeout)
	for {
		if _, ok := waitReadable(fd, 0, deadline); !ok {
			return lost, 0
		}
		ee, ok := readErrQueue(fd, unix.IPPROTO_IP, unix.IP_RECVERR)
		if !ok {
			continue
		}
		switch ee.errno {
		case unix.ECONNREFUSED:
			return passed, 0
		case unix.EMSGSIZE:
			return fragNeeded, int(ee.info)
		}
	}
}

// waitReadable waits until fd has an error queued (always polled) or one
// of events, and returns what it has; ok is false once deadline passes.
func waitReadable(fd int, events int16, deadline time.Time) (revents int16, ok bool) {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, false
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events | unix.POLLERR}}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return 0, false
		}
		return pfd[0].Revents, true
	}
}

// sockExtendedErr is the part of struct sock_extended_err the probes read.
type sockExtendedErr struct {
	errno  unix.Errno
	origin uint8
	info   uint32
}

// readErrQueue takes one error off fd's error queue (IP_RECVERR or
// IPV6_RECVERR): ok is false when there was none, or not of that kind.
func readErrQueue(fd, level, typ int) (sockExtendedErr, bool) {
	oob := make([]byte, 512)
	buf := make([]byte, 64)
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE)
	if err != nil {
		return sockExtendedErr{}, false
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return sockExtendedErr{}, false
	}
	for _, m := range msgs {
		if m.Header.Level != int32(level) || m.Header.Type != int32(typ) || len(m.Data) < 16 {
			continue
		}
		// struct sock_extended_err: ee_errno u32, ee_origin, ee_type,
		// ee_code, ee_pad u8, ee_info u32, ee_data u32.
		return sockExtendedErr{
			errno:  unix.Errno(binary.NativeEndian.Uint32(m.Data[0:4])),
			origin: m.Data[4],
			info:   binary.NativeEndian.Uint32(m.Data[8:12]),
		}, true
	}
	return sockExtendedErr{}, false
}

func (p *prober) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(targetsDesc, prometheus.GaugeValue, float64(p.ntarget))
	targets := make([]netip.Addr, 0, len(p.results))
	for t := range p.results {
		targets = append(targets, t)
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Less(targets[j]) })
	for _, t := range targets {
		r := p.results[t]
		s := t.String()
		ch <- prometheus.MustNewConstMetric(probesDesc, prometheus.CounterValue, float64(r.probes), s)
		ch <- prometheus.MustNewConstMetric(probeTimeDesc, prometheus.GaugeValue, float64(r.finished.UnixNano())/1e9, s)
		if r.pmtu == 0 {
			continue // unreachable: no path MTU to report
		}
		bh := 0.0
		if r.blackhole {
			bh = 1
		}
		ch <- prometheus.MustNewConstMetric(pathMTUDesc, prometheus.GaugeValue, float64(r.pmtu), s)
		ch <- prometheus.MustNewConstMetric(blackholeDesc, prometheus.GaugeValue, bh, s)
	}
	return nil
}

// Close stops the probe loop.
func (p *prober) Close() error {
	p.cancel()
	<-p.done
	return nil
}
