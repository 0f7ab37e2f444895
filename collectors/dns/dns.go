// Package dns exports DNS health per pod, seen from the client's side
// (its pod's veth, or the node's own sockets):
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
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	bpfdns "github.com/netsonde/netsonde/bpf/dns"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/decode"
	"github.com/netsonde/netsonde/internal/hostview"
)

// Spec is the dns collector's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "dns",
	Help:           "DNS queries, answers by rcode, latency, timeouts and drops per pod, matched in the kernel on the client's side (eBPF tc on every interface of the node, or cgroup_skb on the cgroup v2 root).",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_dns_"},
	// Per pod namespace and the host's: 11 query types, 7 rcodes, the
	// timeouts, a histogram of 13 buckets (+Inf, sum, count) and the drop
	// reasons seen (a handful), the queries refused by the quota;
	// node-wide counters; the opt-in top names.
	Budget: func(_, p int) int { return (11+7+1+16+8+1)*(p+1) + 16 },
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
		"Queries the in-flight table (--dns.max-inflight) could not keep: pushed out before their answer or timeout by a newer one of their own pod or of a pod with fewer queries in flight, when both slots of their bucket held queries in time, or not let in, both slots holding queries in time it may not displace or being written by other CPUs at that moment; neither an answer nor a timeout is counted for them. A query pushed out after its timeout is counted as a timeout instead.",
		nil, nil)
	refusedDesc = prometheus.NewDesc(collectors.Namespace+"_dns_inflight_refused_total",
		"Queries not tracked because their pod (or the node's own sockets) already had --dns.max-inflight-per-pod queries in flight: neither an answer nor a timeout is counted for them. One pod's flood is refused here instead of pushing the other pods' queries out of the table.",
		labelsPod, nil)
	lostDesc = prometheus.NewDesc(collectors.Namespace+"_dns_lost_counts_total",
		"Counts the kernel could not keep because a counter map was full (too many pods with DNS traffic at once).",
		nil, nil)
	topNamesDesc = prometheus.NewDesc(collectors.Namespace+"_dns_top_failing_names",
		"Opt-in (--dns.top-failing-names=N): the N query names with the most timeouts plus NXDOMAIN answers on the node since the agent started, by result (timeout, nxdomain). A gauge: names leave when others pass them.",
		[]string{"name", "result"}, nil)
	inflightDesc = prometheus.NewDesc(collectors.Namespace+"_dns_inflight_queries",
		"Queries waiting for an answer, as of the last sweep.",
		nil, nil)
	interfacesDesc = prometheus.NewDesc(collectors.Namespace+"_dns_interfaces",
		"Interfaces of the node's namespace with the DNS programs (--dns.hook=tc), by role: pod (a pod's veth) or node (every other).",
		[]string{"role"}, nil)
	attachFailuresDesc = prometheus.NewDesc(collectors.Namespace+"_dns_interface_attach_failures_total",
		"Interfaces the DNS programs could not be put on (--dns.hook=tc): their pods' DNS is not seen (the log names them).",
		nil, nil)
)

// probe is what the collector uses of the loaded programs after start
// (*bpfdns.Probe), so that a test can serve fixed counts.
type probe interface {
	Hooks() map[string]string
	Read() (bpfdns.Counts, error)
	Sweep(timeout time.Duration) (bpfdns.Swept, error)
	Forget(c bpfdns.Counts, owners, namespaces map[uint64]bool)
	NXDomainByName() (map[uint64]uint64, error)
	Name(hash uint64) (string, bool)
	Close() error
}

type collector struct {
	deps  collectors.Deps
	probe probe
	// tc: the TC hook, whose keys are interfaces (a pod's veth, 0 the
	// host's sockets); else the cgroup hook's, network namespaces.
	tc bool
	// ifacePod remembers whom an interface's counts belong to, so the
	// pod keeps them after its veth is gone, until they are forgotten.
	ifacePod map[uint64]pod
	// ifaces keeps the TC hook's programs on the node's interfaces.
	ifaces  *collectors.Interfaces[bpfdns.Iface]
	reason  func(uint32) string
	own     uint64
	timeout time.Duration
	cancel  context.CancelFunc
	// testNetns labels namespaces by cookie (--dns.only-netns).
	testNetns bool
	done      chan struct{}

	mu sync.Mutex
	// swept counts, per network namespace, the timeouts found by the
	// sweep.
	swept    map[uint64]uint64
	live     int
	sweepErr error

	// forgetAfter: counters of a namespace missing this long are deleted;
	// missing says since when each one has been, and missingIface each
	// interface (the TC hook's owners: small numbers, as cookies are, so
	// kept apart).
	forgetAfter  time.Duration
	missing      map[uint64]time.Time
	missingIface map[uint64]time.Time
	lastCheck    time.Time

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
	reasons, err := deps.DropReasons.Names(*c.btfDir)
	debug.FreeOSMemory()
	if err != nil {
		return nil, collectors.Down("no_btf", err)
	}
	own, err := hostview.OwnCookie()
	if err != nil {
		return nil, collectors.Down("netns", err)
	}
	hook := *c.hook
	if hook == hookAuto {
		var why string
		hook, why = autoHook(deps.Net)
		if hook == bpfdns.HookCgroup {
			deps.Logger.Info("dns: watching every socket (cgroup_skb) instead of the interfaces", "why", why)
		}
	}
	if hook == bpfdns.HookTC && deps.Net == nil {
		return nil, collectors.Down("no_netlink", fmt.Errorf("--dns.hook=tc needs the agent's link view"))
	}
	probe, err := bpfdns.Load(bpfdns.Options{Hook: hook, Attach: *c.attach, BTF: deps.BTF, Timeout: *c.timeout, Ports: ports, MaxInflight: *c.maxInflight, MaxInflightPerOwner: *c.perPod,
		CgroupPath: *c.cgroup, OnlyNetns: *c.onlyNetns, NetnsRead: *c.netnsRead, TopNames: *c.topNames})
	if err != nil {
		return nil, collectors.BPFLoadDown(err, "attach_failed")
	}
	deps.Logger.Info("dns counter loaded", "hook", hook, "cgroup", probe.Cgroup, "hooks", probe.Hooks(), "tried", probe.Tried())
	every := *c.sweepEvery
	if every <= 0 {
		every = min(*c.timeout/4, time.Second)
		every = max(every, 50*time.Millisecond)
	}
	sctx, cancel := context.WithCancel(ctx)
	col := &collector{deps: deps, probe: probe, tc: hook == bpfdns.HookTC, ifacePod: map[uint64]pod{}, reason: reasons.Name, own: own, timeout: *c.timeout, testNetns: len(*c.onlyNetns) > 0,
		cancel: cancel, done: make(chan struct{}), swept: map[uint64]uint64{},
		forgetAfter: *c.forgetAfter, missing: map[uint64]time.Time{}, missingIface: map[uint64]time.Time{},
		topNames: *c.topNames, nameTimeouts: map[uint64]uint64{}}
	if col.tc {
		col.ifaces = collectors.NewInterfaces(deps, probe.Interfaces(), collectors.InterfaceOptions[bpfdns.Iface]{What: "DNS", Want: wantIface})
		col.ifaces.Start(sctx)
	}
	go col.sweeper(sctx, every)
	return col, nil
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
	// Each owner is named once per scrape: its keys are many (types,
	// rcodes, buckets).
	type named struct {
		p  pod
		ok bool
	}
	owners := map[uint64]named{}
	keyPod := func(k uint64) (pod, bool) {
		n, seen := owners[k]
		if !seen {
			n.p, n.ok = c.keyPod(k)
			owners[k] = n
		}
		return n.p, n.ok
	}
	qs := map[qk]uint64{}
	for k, v := range counts.Queries {
		if p, ok := keyPod(k.Owner); ok {
			qs[qk{p, decode.QtypeName(k.Qtype)}] += v
		}
	}
	rs := map[rk]uint64{}
	for k, v := range counts.Responses {
		if p, ok := keyPod(k.Owner); ok {
			rs[rk{p, decode.RcodeName(k.Rcode)}] += v
		}
	}
	hs := map[pod]*hist{}
	for k, v := range counts.Latency {
		p, ok := keyPod(k.Owner)
		if !ok {
			continue
		}
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
	refused := map[pod]uint64{}
	for k, v := range counts.Refused {
		if p, ok := keyPod(k); ok {
			refused[p] += v
		}
	}
	ts := map[pod]uint64{}
	for k, v := range counts.Timeouts {
		if p, ok := keyPod(k); ok {
			ts[p] += v
		}
	}
	c.mu.Lock()
	swept := maps.Clone(c.swept)
	live := c.live
	var nameTimeouts map[uint64]uint64
	if c.topNames > 0 {
		nameTimeouts = maps.Clone(c.nameTimeouts)
	}
	c.mu.Unlock()
	for k, v := range swept {
		if p, ok := keyPod(k); ok {
			ts[p] += v
		}
	}
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
	for p, v := range refused {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(v), p.namespace, p.name)
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
	// The kernel counts a query displaced in time from its slot as
	// evicted, and one displaced after its timeout as a timeout (in
	// counts.Timeouts, as the sweep would have): each once.
	ch <- prometheus.MustNewConstMetric(evictionsDesc, prometheus.CounterValue, float64(counts.Stats[bpfdns.StatEvicted]+counts.Stats[bpfdns.StatNotTracked]))
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(st[bpfdns.StatLost]))
	ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(live))
	if c.tc {
		var pods, node int
		c.ifaces.Each(func(_ int, f bpfdns.Iface) {
			if f.Flags&bpfdns.IfacePod != 0 {
				pods++
			} else {
				node++
			}
		})
		ch <- prometheus.MustNewConstMetric(interfacesDesc, prometheus.GaugeValue, float64(pods), "pod")
		ch <- prometheus.MustNewConstMetric(interfacesDesc, prometheus.GaugeValue, float64(node), "node")
		ch <- prometheus.MustNewConstMetric(attachFailuresDesc, prometheus.CounterValue, float64(c.ifaces.Failures()))
	}
	return nil
}

func (c *collector) Close() error {
	c.cancel()
	<-c.done
	if c.ifaces != nil {
		c.ifaces.Close()
	}
	return c.probe.Close()
}
