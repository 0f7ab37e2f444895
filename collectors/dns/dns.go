// Package dns exports DNS health per pod, seen from the client's socket:
// queries by type, answers by rcode, answer latency, the queries that got
// no answer in time, and the DNS packets the kernel dropped. Queries and
// answers are matched in the kernel (bpf/dns); the only work in user space
// is a periodic sweep of the in-flight table for timeouts and the reading
// of per-CPU counters at scrape.
package dns

import (
	"context"
	"fmt"
	"maps"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/agent/hostnet"
	bpfdns "github.com/netsonde/netsonde/bpf/dns"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/drops"
)

// Spec is the dns collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "dns",
	Help:           "DNS queries, answers by rcode, latency, timeouts and drops per pod, matched in the kernel at the client's socket (eBPF cgroup_skb on the cgroup v2 root).",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_dns_"},
	// Per pod namespace and the host's: 11 query types, 7 rcodes, the
	// timeouts, a histogram of 13 buckets (+Inf, sum, count) and the drop
	// reasons seen (a handful); node-wide counters; the opt-in top names.
	Budget: func(_, p int) int { return (11+7+1+16+8)*(p+1) + 16 },
	Setup:  setup,
}

var labelsPod = []string{"namespace", "pod"}

var (
	queriesDesc = prometheus.NewDesc(collectors.Namespace+"_dns_queries_total",
		"DNS queries sent, by query type (A, AAAA, SRV, PTR, TXT, CNAME, MX, NS, SOA, HTTPS, other).",
		append(labelsPod, "qtype"), nil)
	responsesDesc = prometheus.NewDesc(collectors.Namespace+"_dns_responses_total",
		"DNS answers that matched a query in flight (same socket, addresses, ports and ID) within --dns.timeout, by rcode.",
		append(labelsPod, "rcode"), nil)
	timeoutsDesc = prometheus.NewDesc(collectors.Namespace+"_dns_timeouts_total",
		"DNS queries that got no answer within --dns.timeout.",
		labelsPod, nil)
	durationDesc = prometheus.NewDesc(collectors.Namespace+"_dns_response_duration_seconds",
		"Time from a DNS query leaving the client's socket to its answer arriving there.",
		labelsPod, nil)
	droppedDesc = prometheus.NewDesc(collectors.Namespace+"_dns_dropped_total",
		"DNS packets (to or from a DNS port) the kernel dropped, by the kernel's drop reason, attributed to the network namespace they were dropped in.",
		append(labelsPod, "reason"), nil)
	unmatchedDesc = prometheus.NewDesc(collectors.Namespace+"_dns_unmatched_responses_total",
		"DNS answers to no query in flight: late (after the sweep), spoofed, with a different ID, or to a query evicted from the table.",
		nil, nil)
	malformedDesc = prometheus.NewDesc(collectors.Namespace+"_dns_malformed_packets_total",
		"Packets to or from a DNS port that are not a DNS message netsonde reads (too short, wrong direction, not opcode QUERY, a TCP segment without exactly one whole message).",
		nil, nil)
	evictionsDesc = prometheus.NewDesc(collectors.Namespace+"_dns_inflight_evictions_total",
		"Queries pushed out of the full in-flight table (--dns.max-inflight) before an answer or a timeout; neither is counted for them.",
		nil, nil)
	lostDesc = prometheus.NewDesc(collectors.Namespace+"_dns_lost_counts_total",
		"Counts the kernel could not keep because a counter map was full (too many pods with DNS traffic at once).",
		nil, nil)
	topNamesDesc = prometheus.NewDesc(collectors.Namespace+"_dns_top_failing_names",
		"Opt-in (--dns.top-failing-names=N): the N query names with the most timeouts plus NXDOMAIN answers on the node since the agent started, by result (timeout, nxdomain). A gauge: names leave when others pass them.",
		[]string{"name", "result"}, nil)
	inflightDesc = prometheus.NewDesc(collectors.Namespace+"_dns_inflight_queries",
		"Queries waiting for an answer, as of the last sweep.",
		nil, nil)
)

// qtypes names the query types the kernel keeps apart; 0 is other.
var qtypes = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV", 65: "HTTPS",
}

// QtypeName names a folded query type as the qtype label.
func QtypeName(t uint16) string {
	if n, ok := qtypes[t]; ok {
		return n
	}
	return "other"
}

// RcodeName names an rcode as the rcode label.
func RcodeName(r uint16) string {
	switch r {
	case 0:
		return "NOERROR"
	case 1:
		return "FORMERR"
	case 2:
		return "SERVFAIL"
	case 3:
		return "NXDOMAIN"
	case 4:
		return "NOTIMP"
	case 5:
		return "REFUSED"
	default:
		return "other"
	}
}

// ParsePorts reads --dns.ports: port numbers, comma-separated or
// repeated; 53 is always watched and need not be given.
func ParsePorts(vals []string) ([]uint16, error) {
	var out []uint16
	seen := map[uint16]bool{53: true}
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			n, err := strconv.ParseUint(f, 10, 16)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("--dns.ports: %q is not a port", f)
			}
			if !seen[uint16(n)] {
				seen[uint16(n)] = true
				out = append(out, uint16(n))
			}
		}
	}
	if len(out) > bpfdns.MaxPorts {
		return nil, fmt.Errorf("--dns.ports: at most %d ports besides 53", bpfdns.MaxPorts)
	}
	return out, nil
}

type config struct {
	timeout     *time.Duration
	ports       *[]string
	maxInflight *uint32
	cgroup      *string
	btfDir      *string
	sweepEvery  *time.Duration
	onlyNetns   *[]uint32
	netnsRead   *string
	forgetAfter *time.Duration
	topNames    *int
}

func setup(app *kingpin.Application) collectors.Factory {
	c := config{
		timeout: app.Flag("dns.timeout", "A query unanswered this long is a timeout (glibc's default is 5s).").
			Default("5s").Duration(),
		ports: app.Flag("dns.ports", "DNS server ports to watch besides 53 (comma-separated or repeated; at most 8).").
			Strings(),
		maxInflight: app.Flag("dns.max-inflight", "Queries in flight the kernel table holds; beyond it the oldest are evicted (and counted in netsonde_dns_inflight_evictions_total).").
			Default("16384").Uint32(),
		cgroup: app.Flag("dns.cgroup-path", "cgroup v2 directory whose sockets are watched; default: the root of the cgroup2 mount in /proc/self/mountinfo (in a container: mount the host's /sys/fs/cgroup).").
			Default("").String(),
		btfDir: app.Flag("dns.btf-dir", "Where the kernel's BTF is (drop reason names).").
			Default("/sys/kernel/btf").String(),
		sweepEvery: app.Flag("dns.sweep-interval", "How often the in-flight table is swept for timeouts; default: a quarter of --dns.timeout, at most 1s.").
			Default("0").Hidden().Duration(),
		topNames: app.Flag("dns.top-failing-names", "Keep the N query names with the most timeouts and NXDOMAIN answers (netsonde_dns_top_failing_names); 0: off, no name is kept anywhere.").
			Default("0").Int(),
		forgetAfter: app.Flag("dns.forget-after", "Forget the counters of a network namespace (a pod) this long after it disappeared, so its series end and the kernel maps keep room.").
			Default("2m").Duration(),
		netnsRead: app.Flag("dns.netns-read", "How the programs read a socket's network namespace: auto (bpf_rdonly_cast on 6.2+, else bpf_probe_read_kernel), cast or probe_read.").
			Default(bpfdns.NetnsReadAuto).Hidden().Enum(bpfdns.NetnsReadAuto, bpfdns.NetnsReadCast, bpfdns.NetnsReadProbe),
		onlyNetns: app.Flag("dns.only-netns", "For tests: count only the sockets of these network namespaces (inodes), labelled namespace=\"netns\", pod=INODE.").
			Hidden().Uint32List(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		return start(ctx, deps, c)
	}
}

// probe is what the collector uses of the loaded programs after start
// (*bpfdns.Probe), so that a test can serve fixed counts.
type probe interface {
	Hooks() map[string]string
	Read() (bpfdns.Counts, error)
	Sweep(timeout time.Duration) (bpfdns.Swept, error)
	Forget(c bpfdns.Counts, gone map[uint32]bool)
	NXDomainByName() (map[uint64]uint64, error)
	Name(hash uint64) (string, bool)
	Close() error
}

type collector struct {
	deps    collectors.Deps
	probe   probe
	reason  func(uint32) string
	own     uint32
	timeout time.Duration
	cancel  context.CancelFunc
	// testNetns labels namespaces by inode (--dns.only-netns).
	testNetns bool
	done      chan struct{}

	mu sync.Mutex
	// swept counts, per network namespace, the timeouts found by the
	// sweep; sweptAll is their total.
	swept    map[uint32]uint64
	sweptAll uint64
	live     int
	evicted  uint64
	sweepErr error

	// forgetAfter: counters of a namespace missing this long are deleted;
	// missing says since when each one has been.
	forgetAfter time.Duration
	missing     map[uint32]time.Time
	lastCheck   time.Time

	// topNames is --dns.top-failing-names; nameTimeouts counts timeouts
	// per name hash, bounded by maxNames.
	topNames     int
	nameTimeouts map[uint64]uint64
}

// maxNames bounds the timeouts kept per name: many more than are shown,
// so a name climbing into the top is not forgotten on the way.
func (c *collector) maxNames() int { return min(max(64*c.topNames, 1024), 65536) }

func start(ctx context.Context, deps collectors.Deps, c config) (collectors.Collector, error) {
	ports, err := ParsePorts(*c.ports)
	if err != nil {
		return nil, collectors.Down("bad_flag", err)
	}
	if *c.topNames < 0 || *c.topNames > 1000 {
		return nil, collectors.Down("bad_flag", fmt.Errorf("--dns.top-failing-names must be 0 to 1000, got %d", *c.topNames))
	}
	if *c.timeout <= 0 {
		return nil, collectors.Down("bad_flag", fmt.Errorf("--dns.timeout must be positive, got %v", *c.timeout))
	}
	reason, err := drops.ReasonNamer(*c.btfDir)
	debug.FreeOSMemory()
	if err != nil {
		return nil, collectors.Down("no_btf", err)
	}
	own, err := hostnet.OwnInode()
	if err != nil {
		return nil, collectors.Down("netns", err)
	}
	probe, err := bpfdns.Load(bpfdns.Options{Hook: bpfdns.HookCgroup, BTF: deps.BTF, Timeout: *c.timeout, Ports: ports, MaxInflight: *c.maxInflight,
		CgroupPath: *c.cgroup, OnlyNetns: *c.onlyNetns, NetnsRead: *c.netnsRead, TopNames: *c.topNames})
	if err != nil {
		return nil, collectors.BPFLoadDown(err, "attach_failed")
	}
	deps.Logger.Info("dns counter attached", "cgroup", probe.Cgroup, "hooks", probe.Hooks(), "tried", probe.Tried())
	every := *c.sweepEvery
	if every <= 0 {
		every = min(*c.timeout/4, time.Second)
		every = max(every, 50*time.Millisecond)
	}
	sctx, cancel := context.WithCancel(ctx)
	col := &collector{deps: deps, probe: probe, reason: reason, own: uint32(own), timeout: *c.timeout, testNetns: len(*c.onlyNetns) > 0,
		cancel: cancel, done: make(chan struct{}), swept: map[uint32]uint64{},
		forgetAfter: *c.forgetAfter, missing: map[uint32]time.Time{},
		topNames: *c.topNames, nameTimeouts: map[uint64]uint64{}}
	go col.sweeper(sctx, every)
	return col, nil
}

// sweeper closes, every interval, the queries older than the timeout. A
// query is a timeout at most one interval after its deadline.
func (c *collector) sweeper(ctx context.Context, every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweep()
		}
	}
}

func (c *collector) sweep() {
	sw, err := c.probe.Sweep(c.timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepErr = err
	if err != nil {
		c.deps.Logger.Warn("sweep of in-flight DNS queries failed", "err", err)
		return
	}
	for ns, n := range sw.ByNetns {
		c.swept[ns] += n
		c.sweptAll += n
	}
	if c.topNames > 0 {
		for h, n := range sw.ByName {
			c.nameTimeouts[h] += n
		}
		c.nameTimeouts = Prune(c.nameTimeouts, c.maxNames())
	}
	live := sw.Live
	c.live = live
	counts, err := c.probe.Read()
	if err != nil {
		return
	}
	// Every query inserted leaves the table by an answer, the sweep, or
	// eviction; what is neither answered, swept nor still there was
	// evicted. Races with the kernel between the read and the walk can
	// only make this lag, so it is kept monotonic.
	c.forgetGone(counts)
	st := counts.Stats
	closedAll := st[bpfdns.StatAnswered] + st[bpfdns.StatLate] + c.sweptAll + uint64(live)
	if st[bpfdns.StatTracked] > closedAll {
		c.evicted = max(c.evicted, st[bpfdns.StatTracked]-closedAll)
	}
}

// forgetGone deletes the counters of namespaces gone for forgetAfter, as
// the host network view sees them; it looks at most every few seconds.
// Called with c.mu held.
func (c *collector) forgetGone(counts bpfdns.Counts) {
	now := c.deps.Now()
	if c.deps.Net == nil || now.Sub(c.lastCheck) < min(c.forgetAfter/2, 10*time.Second) {
		return
	}
	c.lastCheck = now
	used := counts.Namespaces()
	for ns := range c.swept {
		used[ns] = true
	}
	snap := c.deps.Net.Snapshot()
	gone := map[uint32]bool{}
	for ns := range used {
		_, state, _ := snap.Lookup(uint64(ns))
		if state == hostnet.Unknown && ns != 0 && ns != c.own {
			c.deps.Net.Miss(uint64(ns))
		}
		if ns == 0 || ns == c.own || state == hostnet.Present {
			delete(c.missing, ns)
			continue
		}
		since, ok := c.missing[ns]
		if !ok {
			c.missing[ns] = now
			continue
		}
		if now.Sub(since) >= c.forgetAfter {
			gone[ns] = true
			delete(c.missing, ns)
			delete(c.swept, ns)
		}
	}
	if len(gone) > 0 {
		c.probe.Forget(counts, gone)
		c.deps.Logger.Debug("forgot DNS counters of vanished namespaces", "namespaces", len(gone))
	}
}

// Prune keeps the max largest counts of m when it has more (half of max,
// so that it is not pruned again at the next sweep), the bounded table of
// the conntrack breakdown's top sources.
func Prune(m map[uint64]uint64, max int) map[uint64]uint64 {
	if len(m) <= max {
		return m
	}
	type kv struct{ k, v uint64 }
	all := make([]kv, 0, len(m))
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].k < all[j].k
	})
	out := make(map[uint64]uint64, max/2)
	for _, e := range all[:max/2] {
		out[e.k] = e.v
	}
	return out
}

// TopFailing returns the n name hashes with the most timeouts plus
// NXDOMAIN answers, most first (ties: by hash, for a stable order).
func TopFailing(timeouts, nxdomain map[uint64]uint64, n int) []uint64 {
	score := map[uint64]uint64{}
	for h, v := range timeouts {
		score[h] += v
	}
	for h, v := range nxdomain {
		score[h] += v
	}
	hs := make([]uint64, 0, len(score))
	for h, v := range score {
		if v > 0 {
			hs = append(hs, h)
		}
	}
	sort.Slice(hs, func(i, j int) bool {
		if score[hs[i]] != score[hs[j]] {
			return score[hs[i]] > score[hs[j]]
		}
		return hs[i] < hs[j]
	})
	if len(hs) > n {
		hs = hs[:n]
	}
	return hs
}

type pod struct{ namespace, name string }

// podOf attributes a network namespace: the agent's own (the host's, for
// a DaemonSet with hostNetwork) and unknown ones are the empty pod.
func (c *collector) podOf(netns uint32) pod {
	if netns == 0 || netns == c.own {
		return pod{}
	}
	if c.testNetns {
		return pod{"netns", strconv.FormatUint(uint64(netns), 10)}
	}
	if c.deps.Pods == nil {
		return pod{}
	}
	p, ok := c.deps.Pods.ByNetns(uint64(netns))
	if !ok {
		return pod{}
	}
	return pod{p.Namespace, p.Name}
}

type hist struct {
	buckets [bpfdns.NBuckets]uint64 // per kernel bucket, not cumulative
	sumNs   uint64
}

// Histogram turns the kernel's per-bucket counts (bucket i: at most
// Edges[i]; the last: above every edge) and sum in nanoseconds into
// Prometheus's cumulative buckets, count and sum in seconds.
func Histogram(perBucket []uint64, sumNs uint64) (map[float64]uint64, uint64, float64) {
	out := make(map[float64]uint64, len(bpfdns.Edges))
	var cum uint64
	for i, e := range bpfdns.Edges {
		if i < len(perBucket) {
			cum += perBucket[i]
		}
		out[e] = cum
	}
	for i := len(bpfdns.Edges); i < len(perBucket); i++ {
		cum += perBucket[i]
	}
	return out, cum, float64(sumNs) / 1e9
}

func (c *collector) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	collectors.BPFHooks(ch, c.probe.Hooks())
	counts, err := c.probe.Read()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	type qk struct {
		pod
		qtype string
	}
	type rk struct {
		pod
		rcode string
	}
	type dk struct {
		pod
		reason string
	}
	qs := map[qk]uint64{}
	for k, v := range counts.Queries {
		qs[qk{c.podOf(k.Netns), QtypeName(k.Qtype)}] += v
	}
	rs := map[rk]uint64{}
	for k, v := range counts.Responses {
		rs[rk{c.podOf(k.Netns), RcodeName(k.Rcode)}] += v
	}
	hs := map[pod]*hist{}
	for k, v := range counts.Latency {
		p := c.podOf(k.Netns)
		h := hs[p]
		if h == nil {
			h = &hist{}
			hs[p] = h
		}
		switch {
		case k.Bucket == bpfdns.SumBucket:
			h.sumNs += v
		case int(k.Bucket) < len(h.buckets):
			h.buckets[k.Bucket] += v
		}
	}
	ds := map[dk]uint64{}
	for k, v := range counts.Drops {
		ds[dk{c.podOf(k.Netns), c.reason(k.Reason)}] += v
	}
	ts := map[pod]uint64{}
	for ns, v := range counts.Timeouts {
		ts[c.podOf(ns)] += v
	}
	c.mu.Lock()
	for ns, v := range c.swept {
		ts[c.podOf(ns)] += v
	}
	live, evicted := c.live, c.evicted
	var nameTimeouts map[uint64]uint64
	if c.topNames > 0 {
		nameTimeouts = maps.Clone(c.nameTimeouts)
	}
	c.mu.Unlock()
	if c.topNames > 0 {
		nx, err := c.probe.NXDomainByName()
		if err != nil {
			return collectors.Down("map_read", err)
		}
		for _, h := range TopFailing(nameTimeouts, nx, c.topNames) {
			name, ok := c.probe.Name(h)
			if !ok {
				continue // pushed out of the kernel's name table
			}
			ch <- prometheus.MustNewConstMetric(topNamesDesc, prometheus.GaugeValue, float64(nameTimeouts[h]), name, "timeout")
			ch <- prometheus.MustNewConstMetric(topNamesDesc, prometheus.GaugeValue, float64(nx[h]), name, "nxdomain")
		}
	}
	// Every pod that sent a query has a timeouts series, 0 included, so
	// a ratio of timeouts to queries exists before the first timeout.
	for k := range qs {
		if _, ok := ts[k.pod]; !ok {
			ts[k.pod] = 0
		}
	}

	for k, v := range qs {
		ch <- prometheus.MustNewConstMetric(queriesDesc, prometheus.CounterValue, float64(v), k.namespace, k.name, k.qtype)
	}
	for k, v := range rs {
		ch <- prometheus.MustNewConstMetric(responsesDesc, prometheus.CounterValue, float64(v), k.namespace, k.name, k.rcode)
	}
	for p, v := range ts {
		ch <- prometheus.MustNewConstMetric(timeoutsDesc, prometheus.CounterValue, float64(v), p.namespace, p.name)
	}
	for p, h := range hs {
		buckets, count, sum := Histogram(h.buckets[:], h.sumNs)
		ch <- prometheus.MustNewConstHistogram(durationDesc, count, sum, buckets, p.namespace, p.name)
	}
	for k, v := range ds {
		ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(v), k.namespace, k.name, k.reason)
	}
	st := counts.Stats
	ch <- prometheus.MustNewConstMetric(unmatchedDesc, prometheus.CounterValue, float64(st[bpfdns.StatUnmatched]))
	ch <- prometheus.MustNewConstMetric(malformedDesc, prometheus.CounterValue, float64(st[bpfdns.StatMalformed]))
	ch <- prometheus.MustNewConstMetric(evictionsDesc, prometheus.CounterValue, float64(evicted))
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(st[bpfdns.StatLost]))
	ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(live))
	return nil
}

func (c *collector) Close() error {
	c.cancel()
	<-c.done
	return c.probe.Close()
}
