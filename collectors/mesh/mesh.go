// Package mesh measures node-to-node latency twice per peer: at the
// peer's underlay address (its Node InternalIP) and through the overlay
// (an address of the peer on the pod network), with ICMP echo, so that what
// the overlay costs, and an overlay that fails while the underlay works,
// show on every node. Each node probes a bounded set of peers chosen by
// rendezvous hashing (peers.go): O(k) probes per node at any fleet size.
package mesh

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
)

// Paths, the path label's values.
const (
	PathUnderlay = "underlay"
	PathOverlay  = "overlay"
)

// Buckets of netsonde_node_rtt_seconds: 100 µs (the same rack) to 2.5 s
// (beyond any sane timeout).
var Buckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// Spec is the collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "mesh",
	Help:           "Node-to-node ICMP round-trip time over the underlay and the overlay to a bounded set of peer nodes (rendezvous hashing).",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_node_", "netsonde_mesh_"},
	// Two paths × one RTT histogram (at most 24 buckets, sum, count) and
	// an unreachable counter; per peer only with --mesh.per-peer.
	Budget: func(_, _ int) int { return 2*(24+2+1) + 8 },
	Setup: func(app *kingpin.Application) collectors.Factory {
		var cfg Config
		peers := app.Flag("mesh.peer", "A peer to probe, NAME=UNDERLAY_IP[,OVERLAY_IP] (repeatable); with Kubernetes, the cluster's nodes are added.").Strings()
		app.Flag("mesh.interval", "How often to probe the peers.").Default("10s").DurationVar(&cfg.Interval)
		app.Flag("mesh.timeout", "How long to wait for a reply before counting the peer unreachable on that path (at most --mesh.interval).").Default("2s").DurationVar(&cfg.Timeout)
		app.Flag("mesh.max-peers", "Peers each node probes at most, chosen by rendezvous hashing over the node list.").Default("16").IntVar(&cfg.MaxPeers)
		app.Flag("mesh.per-peer", "Add a peer label (the node's name) to the mesh metrics: per-peer series, for small clusters.").Default("false").BoolVar(&cfg.PerPeer)
		return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
			for _, s := range *peers {
				p, err := ParsePeer(s)
				if err != nil {
					return nil, collectors.Down("bad_flag", err)
				}
				cfg.Static = append(cfg.Static, p)
			}
			return Start(ctx, deps, cfg)
		}
	},
}

// Config of the mesh prober.
type Config struct {
	Static   []Peer
	Interval time.Duration
	Timeout  time.Duration
	MaxPeers int
	PerPeer  bool
}

var (
	rttDesc = func(perPeer bool) *prometheus.Desc {
		return prometheus.NewDesc(collectors.Namespace+"_node_rtt_seconds",
			"Round-trip time of ICMP echo to peer nodes, by path: underlay (the node's InternalIP) or overlay (its address on the pod network).",
			labels(perPeer), nil)
	}
	unreachableDesc = func(perPeer bool) *prometheus.Desc {
		return prometheus.NewDesc(collectors.Namespace+"_node_unreachable_total",
			"ICMP echo probes to peer nodes that got no reply within --mesh.timeout, by path.",
			labels(perPeer), nil)
	}
	probesDesc = func(perPeer bool) *prometheus.Desc {
		return prometheus.NewDesc(collectors.Namespace+"_node_probes_total",
			"ICMP echo probes sent to peer nodes, by path.",
			labels(perPeer), nil)
	}
	peersDesc = prometheus.NewDesc(collectors.Namespace+"_mesh_peers",
		"Peer nodes this node probes now (at most --mesh.max-peers).", nil, nil)
)

func labels(perPeer bool) []string {
	if perPeer {
		return []string{"path", "peer"}
	}
	return []string{"path"}
}

type seriesKey struct{ path, peer string }

type series struct {
	counts      []uint64 // per bucket, not cumulative; the last is +Inf
	sum         float64
	n           uint64
	unreachable uint64
	probes      uint64
}

type collector struct {
	deps                 collectors.Deps
	cfg                  Config
	self                 string
	v4                   *pinger
	v6                   *pinger
	rtt, unreach, probes *prometheus.Desc
	// chosen is the loop's own: the peers picked from the last node list.
	chosen cluster.Choice[[]Peer]

	mu     sync.Mutex
	series map[seriesKey]*series
	peers  int
	seq    int

	cancel context.CancelFunc
	done   chan struct{}
}

// Start opens the ICMP sockets and starts probing in the background.
func Start(ctx context.Context, deps collectors.Deps, cfg Config) (collectors.Collector, error) {
	if cfg.Interval < 100*time.Millisecond {
		return nil, collectors.Down("bad_flag", fmt.Errorf("--mesh.interval %v: below 100ms", cfg.Interval))
	}
	if cfg.MaxPeers < 1 {
		return nil, collectors.Down("bad_flag", fmt.Errorf("--mesh.max-peers %d: below 1", cfg.MaxPeers))
	}
	if cfg.Timeout <= 0 || cfg.Timeout > cfg.Interval {
		cfg.Timeout = cfg.Interval
	}
	c := &collector{deps: deps, cfg: cfg, self: deps.NodeName, series: map[seriesKey]*series{}, done: make(chan struct{}),
		rtt: rttDesc(cfg.PerPeer), unreach: unreachableDesc(cfg.PerPeer), probes: probesDesc(cfg.PerPeer)}
	if c.self == "" {
		c.self, _ = os.Hostname()
	}
	var err4, err6 error
	c.v4, err4 = openPinger(false)
	c.v6, err6 = openPinger(true)
	if c.v4 == nil && c.v6 == nil {
		return nil, collectors.Down("no_icmp_socket", fmt.Errorf("IPv4: %w; IPv6: %w", err4, err6))
	}
	for _, e := range []struct {
		p   *pinger
		err error
		fam string
	}{{c.v4, err4, "ipv4"}, {c.v6, err6, "ipv6"}} {
		switch {
		case e.p == nil:
			deps.Logger.Warn("mesh: no ICMP socket; peers of this family are not probed", "family", e.fam, "err", e.err)
		case e.p.raw:
			deps.Logger.Info("mesh: ping sockets not allowed (net.ipv4.ping_group_range), using a raw socket", "family", e.fam)
		}
	}
	if !cfg.PerPeer {
		// Both paths from the start, at zero: a dashboard and an alert
		// see "no failures" rather than nothing.
		c.get(PathUnderlay, "")
		c.get(PathOverlay, "")
	}
	ctx, c.cancel = context.WithCancel(ctx)
	go c.loop(ctx)
	return c, nil
}

// get returns the series of path and peer, creating it; c.mu is held or
// nothing else runs yet.
func (c *collector) get(path, peer string) *series {
	k := seriesKey{path, peer}
	s := c.series[k]
	if s == nil {
		s = &series{counts: make([]uint64, len(Buckets)+1)}
		c.series[k] = s
	}
	return s
}

// peerList is the round's peers: chosen again only when the nodes changed.
// The resolver is asked for the top MaxPeers nodes and as many more as
// there are static peers: a static peer of a node's name takes its place,
// and the node ranked next must then be among those given.
func (c *collector) peerList() []Peer {
	return c.chosen.Of(c.deps.Pods.PeerNodes(c.cfg.MaxPeers+len(c.cfg.Static)), func(nodes []cluster.Node) []Peer {
		all := append([]Peer(nil), c.cfg.Static...)
		all = append(all, FromNodes(nodes)...)
		return Select(c.self, all, c.cfg.MaxPeers)
	})
}

func (c *collector) loop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for ctx.Err() == nil { // select picks at random when both are ready
		c.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type target struct {
	peer, path string
	addr       netip.Addr
	sent       time.Time
	rtt        time.Duration
	answered   bool
}

// round probes every selected peer once on each of its paths: all
// requests go out back to back, then replies are read until each is in or
// the timeout passes.
func (c *collector) round(ctx context.Context) {
	peers := c.peerList()
	var targets []*target
	for _, p := range peers {
		targets = append(targets, &target{peer: p.Name, path: PathUnderlay, addr: p.Underlay})
		if p.Overlay.IsValid() {
			targets = append(targets, &target{peer: p.Name, path: PathOverlay, addr: p.Overlay})
		}
	}
	bySeq := map[int]*target{}
	for _, tg := range targets {
		pg := c.v4
		if tg.addr.Is6() {
			pg = c.v6
		}
		if pg == nil {
			continue // logged at start; counted neither way
		}
		c.seq = (c.seq + 1) & 0xffff
		tg.sent = time.Now()
		if err := pg.send(tg.addr, c.seq); err != nil {
			// No route, or the neighbour is known to be unreachable:
			// the path is down as surely as a lost reply says.
			c.deps.Logger.Debug("mesh: send failed", "peer", tg.peer, "path", tg.path, "addr", tg.addr, "err", err)
			tg.sent = time.Time{}
		}
		bySeq[c.seq] = tg
	}
	deadline := time.Now().Add(c.cfg.Timeout)
	replies := make(chan reply)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, pg := range []*pinger{c.v4, c.v6} {
		if pg == nil {
			continue
		}
		// Set once: moving it to now (below) ends the reader for good.
		if err := pg.conn.SetReadDeadline(deadline); err != nil {
			c.deps.Logger.Debug("mesh: read deadline", "err", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				r, err := pg.recv(buf)
				if err != nil {
					if !isTimeout(err) && ctx.Err() == nil {
						c.deps.Logger.Debug("mesh: read", "err", err)
					}
					return
				}
				select {
				case replies <- r:
				case <-stop:
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(replies) }()
	// The agent stops within 2 s of SIGTERM: a round waiting for replies
	// must not hold Close for up to --mesh.timeout.
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		select {
		case <-ctx.Done():
			for _, pg := range []*pinger{c.v4, c.v6} {
				if pg != nil {
					pg.conn.SetReadDeadline(time.Now())
				}
			}
		case <-watchDone:
		}
	}()
	pending := len(bySeq)
	for r := range replies {
		tg, ok := bySeq[r.seq]
		if !ok || tg.answered || tg.sent.IsZero() || tg.addr.Unmap() != r.from {
			continue
		}
		tg.answered, tg.rtt = true, r.at.Sub(tg.sent)
		if pending--; pending == 0 {
			// Every probe answered: stop reading now rather than at the
			// deadline. The readers must be gone before the next round
			// reads the same sockets, or they would take its replies.
			close(stop)
			for _, pg := range []*pinger{c.v4, c.v6} {
				if pg != nil {
					pg.conn.SetReadDeadline(time.Now())
				}
			}
			for range replies {
			}
			break
		}
	}
	if ctx.Err() != nil {
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.peers = len(peers)
	live := map[seriesKey]bool{}
	for _, tg := range bySeq {
		peer := ""
		if c.cfg.PerPeer {
			peer = tg.peer
		}
		live[seriesKey{tg.path, peer}] = true
		s := c.get(tg.path, peer)
		s.probes++
		if !tg.answered {
			s.unreachable++
			continue
		}
		v := tg.rtt.Seconds()
		i := sort.SearchFloat64s(Buckets, v) // first edge >= v: le is inclusive
		s.counts[i]++
		s.sum += v
		s.n++
	}
	if c.cfg.PerPeer {
		// A peer no longer selected (or gone from the cluster) takes its
		// series with it.
		for k := range c.series {
			if !live[k] {
				delete(c.series, k)
			}
		}
	}
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(c.peers))
	for k, s := range c.series {
		lv := []string{k.path}
		if c.cfg.PerPeer {
			lv = append(lv, k.peer)
		}
		b := make(map[float64]uint64, len(Buckets))
		var cum uint64
		for i, e := range Buckets {
			cum += s.counts[i]
			b[e] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.rtt, s.n, s.sum, b, lv...)
		ch <- prometheus.MustNewConstMetric(c.unreach, prometheus.CounterValue, float64(s.unreachable), lv...)
		ch <- prometheus.MustNewConstMetric(c.probes, prometheus.CounterValue, float64(s.probes), lv...)
	}
	return nil
}

func (c *collector) Close() error {
	c.cancel()
	<-c.done
	if c.v4 != nil {
		c.v4.close()
	}
	if c.v6 != nil {
		c.v6.close()
	}
	return nil
}
