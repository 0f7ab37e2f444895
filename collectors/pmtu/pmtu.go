// Package pmtu probes the path MTU to chosen targets and to a bounded set
// of the cluster's other nodes, tracepath-style, and flags PMTU black
// holes: probes larger than the path that vanish with no ICMP
// "fragmentation needed" back. The peer nodes are chosen by rendezvous
// hashing, as the mesh chooses its own (cluster.Rendezvous): each node
// probes at most --pmtu.max-peers of them, and the cluster's probes
// together still reach every node.
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
	// --pmtu.target and --pmtu.max-peers peer nodes. Each --pmtu.target
	// adds four, as does each peer above the default.
	Budget: func(_, _ int) int { return 4*DefaultMaxPeers + 1 },
	Setup:  setup,
}

var (
	pathMTUDesc = prometheus.NewDesc(collectors.Namespace+"_path_mtu_bytes",
		"Largest IPv4 packet, in bytes, that crossed to the target with DF set in the last probe run (tracepath-style UDP probes).",
		[]string{"target"}, nil)
	blackholeDesc = prometheus.NewDesc(collectors.Namespace+"_path_mtu_blackhole",
		"1 when probes larger than the path MTU vanished and no ICMP fragmentation-needed came back: a PMTU black hole.",
		[]string{"target"}, nil)
	probesDesc = prometheus.NewDesc(collectors.Namespace+"_path_mtu_probes_total",
		"Probe packets sent to the target.", []string{"target"}, nil)
	probeTimeDesc = prometheus.NewDesc(collectors.Namespace+"_path_mtu_probe_timestamp_seconds",
		"When the last probe run to the target finished (Unix time).", []string{"target"}, nil)
	targetsDesc = prometheus.NewDesc(collectors.Namespace+"_pmtu_targets",
		"Targets a path-MTU round probes: --pmtu.target and at most --pmtu.max-peers peer nodes.", nil, nil)
)

// DefaultMaxPeers is --pmtu.max-peers' default, the mesh's too: 16 peers
// probed per node, each node probed by about 16 others.
const DefaultMaxPeers = 16

// Probing budget. Each run sends at most maxProbes packets to a target, one
// every --pmtu.gap, and a run starts every --pmtu.interval: with the
// defaults, at most 16 packets per target per 5 minutes, of at most the
// interface MTU each. minProbe is the IPv4 minimum every link carries
// (RFC 791: 576), below which there is nothing to learn.
const (
	maxProbes = 16
	minProbe  = 576
	probePort = 33434 // traceroute's: nothing listens there, so arrival answers port unreachable
)

type pmtuConfig struct {
	targets  *[]string
	maxPeers *int
	interval *time.Duration
	gap      *time.Duration
	timeout  *time.Duration
}

func setup(app *kingpin.Application) collectors.Factory {
	c := pmtuConfig{
		targets: app.Flag("pmtu.target", "IPv4 address to probe the path MTU to (repeatable); peer nodes from the cluster are added (--pmtu.max-peers).").Strings(),
		maxPeers: app.Flag("pmtu.max-peers", "Peer nodes each node probes at most, chosen by rendezvous hashing over the node list as the mesh chooses its peers; 0 probes --pmtu.target only.").
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
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("--pmtu.target %q: not an IPv4 address", t)
		}
		p.static = append(p.static, a)
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

// Peers returns the peer nodes self probes: at most k, one per node name,
// each at its (first) IPv4 InternalIP, chosen by rendezvous hashing among
// the nodes that have one (the probe is IPv4 only). Wherever every node
// has an IPv4 address these are the nodes the mesh probes with
// --mesh.max-peers=k, so one node's two probers look at the same peers.
func Peers(self string, nodes []cluster.Node, k int) []cluster.Node {
	v4 := make([]cluster.Node, 0, len(nodes))
	for _, n := range nodes {
		if n.InternalIP.Unmap().Is4() {
			n.InternalIP = n.InternalIP.Unmap()
			v4 = append(v4, n) // a name listed twice counts once, the first
		}
	}
	return cluster.Rendezvous(self, v4, func(n cluster.Node) string { return n.Name }, k)
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
	for _, n := range Peers(p.self, p.deps.Pods.PeerNodes(), *p.cfg.maxPeers) {
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
		o, mtu := probe(dst, cand, *p.cfg.timeout)
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
				cand = (max(lo, minProbe) + hiFail) / 2
			}
		case lost, tooBig:
			if o == lost {
				lostWithoutICMP = true
			}
			hiFail = cand
			cand = (max(lo, minProbe) + hiFail) / 2
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
// path-MTU learning: IP_PMTUDISC_PROBE ignores learned values.
func firstHopMTU(dst netip.Addr) int {
	fd, err := dial(dst)
	if err != nil {
		return 1500
	}
	defer unix.Close(fd)
	mtu, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU)
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
	local, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return 0
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && [4]byte(n.IP.To4()) == local.Addr {
				return ifc.MTU
			}
		}
	}
	return 0
}

func dial(dst netip.Addr) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.As4(), Port: probePort}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// probe sends one UDP datagram that makes an IPv4 packet of size bytes,
// with DF set, from a fresh socket (so no answer to an earlier probe is
// mistaken for this one's), and reads its fate from the error queue.
func probe(dst netip.Addr, size int, timeout time.Duration) (outcome, int) {
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
		left := time.Until(deadline)
		if left <= 0 {
			return lost, 0
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLERR}}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return lost, 0
		}
		oob := make([]byte, 512)
		buf := make([]byte, 64)
		_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_ERRQUEUE)
		if err != nil {
			continue
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_RECVERR || len(m.Data) < 16 {
				continue
			}
			// struct sock_extended_err
			errno := binary.NativeEndian.Uint32(m.Data[0:4])
			info := binary.NativeEndian.Uint32(m.Data[8:12])
			switch unix.Errno(errno) {
			case unix.ECONNREFUSED:
				return passed, 0
			case unix.EMSGSIZE:
				return fragNeeded, int(info)
			}
		}
	}
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
