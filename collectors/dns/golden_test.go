package dns

import (
	"fmt"
	"strings"
	"testing"
	"time"

	bpfdns "github.com/netsonde/netsonde/bpf/dns"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// fixedProbe serves fixed counts and names.
type fixedProbe struct {
	counts bpfdns.Counts
	nx     map[uint64]uint64
	names  map[uint64]string
}

func (p *fixedProbe) Hooks() map[string]string {
	return map[string]string{bpfdns.ProgramEgress: "cgroup_skb", bpfdns.ProgramIngress: "cgroup_skb", bpfdns.ProgramDrops: "tp_btf"}
}
func (p *fixedProbe) Read() (bpfdns.Counts, error)                           { return p.counts, nil }
func (p *fixedProbe) Sweep(time.Duration) (bpfdns.Swept, error)              { return bpfdns.Swept{}, nil }
func (p *fixedProbe) Forget(bpfdns.Counts, map[uint64]bool, map[uint64]bool) {}
func (p *fixedProbe) NXDomainByName() (map[uint64]uint64, error)             { return p.nx, nil }
func (p *fixedProbe) Name(h uint64) (string, bool)                           { n, ok := p.names[h]; return n, ok }
func (p *fixedProbe) Close() error                                           { return nil }

// TestGoldenMetrics: with the TC hook, DNS of the node's own sockets
// (key 0), a pod's veth (the pod named after it), a veth no pod owns and
// an interface the view does not know (both the host's, summed), timeouts
// from the kernel and from the sweep, drops by reason (by namespace,
// whatever the hook), and the top failing names (one pushed out of the
// kernel's name table).
func TestGoldenMetrics(t *testing.T) {
	golden.Check(t, goldenCollector(true))
}

// TestGoldenMetricsCgroupHook: the same counts keyed by network namespace,
// as the cgroup hook keys them, give the same page.
func TestGoldenMetricsCgroupHook(t *testing.T) {
	tc, cg := golden.Render(t, goldenCollector(true)), golden.Render(t, goldenCollector(false))
	// Less the TC hook's own series: the interfaces it watches.
	var keep []string
	for _, l := range strings.SplitAfter(tc, "\n") {
		if !strings.Contains(l, "netsonde_dns_interface") {
			keep = append(keep, l)
		}
	}
	tc = strings.Join(keep, "")
	if tc != cg {
		t.Errorf("cgroup hook's page differs from the TC hook's:\n%s\nwant:\n%s", cg, tc)
	}
}

func goldenCollector(tc bool) *collector {
	own, podK, other, unknown := uint64(golden.OwnNetns), uint64(golden.PodNetns), uint64(golden.OtherNetns), uint64(golden.UnknownNetns)
	if tc {
		// Keys are pods' veths and 0, the node's own sockets (where
		// the cgroup hook's unknown namespace goes too).
		own, podK, other, unknown = 0, golden.IfPodVeth, golden.IfOtherVeth, 0
	}
	podNs, ownNs := uint64(golden.PodNetns), uint64(golden.OwnNetns)
	const a, aaaa, srv, servfail, nxdomain = 1, 28, 33, 2, 3
	latency := map[bpfdns.HistKey]uint64{
		{Owner: own, Bucket: bpfdns.SumBucket}:  1_250_000_000,
		{Owner: podK, Bucket: bpfdns.SumBucket}: 7_000_000_000,
	}
	for b := range uint32(bpfdns.NBuckets) {
		latency[bpfdns.HistKey{Owner: own, Bucket: b}] = uint64(b % 3)
		latency[bpfdns.HistKey{Owner: podK, Bucket: b}] = uint64(b + 1)
	}
	queries := map[bpfdns.QueryKey]uint64{}
	for k, v := range map[bpfdns.QueryKey]uint64{
		{Owner: own, Qtype: a}: 100, {Owner: own, Qtype: aaaa}: 100, {Owner: other, Qtype: a}: 7,
		{Owner: podK, Qtype: a}: 50, {Owner: podK, Qtype: srv}: 5, {Owner: podK, Qtype: 0}: 2,
	} {
		queries[k] += v
	}
	queries[bpfdns.QueryKey{Owner: unknown, Qtype: a}] += 3
	var stats [len(bpfdns.Counts{}.Stats)]uint64
	stats[bpfdns.StatTracked], stats[bpfdns.StatAnswered], stats[bpfdns.StatUnmatched], stats[bpfdns.StatMalformed], stats[bpfdns.StatLost], stats[bpfdns.StatEvicted] = 400, 380, 3, 1, 2, 2
	p := &fixedProbe{
		counts: bpfdns.Counts{
			Queries: queries,
			Responses: map[bpfdns.RespKey]uint64{
				{Owner: own, Rcode: 0}: 190, {Owner: other, Rcode: 0}: 6,
				{Owner: podK, Rcode: 0}: 45, {Owner: podK, Rcode: nxdomain}: 4, {Owner: podK, Rcode: servfail}: 1,
			},
			Latency:  latency,
			Timeouts: map[uint64]uint64{podK: 1},
			Refused:  map[uint64]uint64{podK: 12},
			Drops:    map[bpfdns.DropKey]uint64{{Netns: podNs, Reason: 2}: 3, {Netns: ownNs, Reason: 6}: 1, {Netns: 0, Reason: 99}: 4},
			Stats:    stats,
		},
		nx:    map[uint64]uint64{0x22: 3, 0x33: 6, 0x44: 1},
		names: map[uint64]string{0x11: "api.shop.svc.cluster.local", 0x22: "db.example.com", 0x33: "nonexistent.example.com"},
	}
	var ifaces *collectors.Interfaces[bpfdns.Iface]
	if tc {
		ifaces = collectors.FixedInterfaces(map[int]bpfdns.Iface{golden.IfLo: {}, golden.IfEth0: {}, golden.IfFlannel: {}, golden.IfCNI0: {},
			golden.IfPodVeth: {Flags: bpfdns.IfacePod | bpfdns.IfaceEnslaved}, golden.IfOtherVeth: {Flags: bpfdns.IfacePod}}, "tc")
	}
	view := golden.Node()
	reasons := map[uint32]string{2: "NO_SOCKET", 6: "NETFILTER_DROP"}
	return &collector{deps: collectors.Deps{Net: view, Pods: view, Clock: &golden.Clock{T: golden.Now}}, probe: p, tc: tc, ifaces: ifaces, ifacePod: map[uint64]pod{},
		reason: func(r uint32) string {
			if n, ok := reasons[r]; ok {
				return n
			}
			return fmt.Sprint(r)
		},
		own: ownNs, timeout: 5 * time.Second, swept: map[uint64]uint64{podK: 2, other: 1}, live: 3,
		forgetAfter: 2 * time.Minute, missing: map[uint64]time.Time{}, missingIface: map[uint64]time.Time{},
		topNames: 4, nameTimeouts: map[uint64]uint64{0x11: 4, 0x22: 1, 0x44: 2}}
}

// TestUnresolvedInterfaceWaits: with the TC hook, the counts of an
// interface whose pod cannot be told (gone before the host view read its
// namespace) are not shown, rather than shown as the node's.
func TestUnresolvedInterfaceWaits(t *testing.T) {
	want := golden.Render(t, goldenCollector(true))
	c := goldenCollector(true)
	p := c.probe.(*fixedProbe)
	p.counts.Queries[bpfdns.QueryKey{Owner: golden.IfGone, Qtype: 1}] = 9
	p.counts.Responses[bpfdns.RespKey{Owner: golden.IfGone}] = 9
	p.counts.Timeouts[golden.IfGone] = 1
	if got := golden.Render(t, c); got != want {
		t.Errorf("an unresolved interface's counts changed the page:\n%s", got)
	}
}
