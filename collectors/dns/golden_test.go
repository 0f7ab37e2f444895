package dns

import (
	"fmt"
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
func (p *fixedProbe) Read() (bpfdns.Counts, error)               { return p.counts, nil }
func (p *fixedProbe) Sweep(time.Duration) (bpfdns.Swept, error)  { return bpfdns.Swept{}, nil }
func (p *fixedProbe) Forget(bpfdns.Counts, map[uint32]bool)      {}
func (p *fixedProbe) NXDomainByName() (map[uint64]uint64, error) { return p.nx, nil }
func (p *fixedProbe) Name(h uint64) (string, bool)               { n, ok := p.names[h]; return n, ok }
func (p *fixedProbe) Close() error                               { return nil }

// TestGoldenMetrics: DNS of the agent's namespace, the pod's (named after
// it), one no pod owns and one the view has not met (both the host's,
// summed), timeouts from the kernel and from the sweep, drops by reason,
// and the top failing names (one pushed out of the kernel's name table).
func TestGoldenMetrics(t *testing.T) {
	own, pod, other, unknown := uint32(golden.OwnNetns), uint32(golden.PodNetns), uint32(golden.OtherNetns), uint32(golden.UnknownNetns)
	const a, aaaa, srv, servfail, nxdomain = 1, 28, 33, 2, 3
	latency := map[bpfdns.HistKey]uint64{
		{Netns: own, Bucket: bpfdns.SumBucket}: 1_250_000_000,
		{Netns: pod, Bucket: bpfdns.SumBucket}: 7_000_000_000,
	}
	for b := range uint32(bpfdns.NBuckets) {
		latency[bpfdns.HistKey{Netns: own, Bucket: b}] = uint64(b % 3)
		latency[bpfdns.HistKey{Netns: pod, Bucket: b}] = uint64(b + 1)
	}
	var stats [len(bpfdns.Counts{}.Stats)]uint64
	stats[bpfdns.StatTracked], stats[bpfdns.StatAnswered], stats[bpfdns.StatUnmatched], stats[bpfdns.StatMalformed], stats[bpfdns.StatLost] = 400, 380, 3, 1, 2
	p := &fixedProbe{
		counts: bpfdns.Counts{
			Queries: map[bpfdns.QueryKey]uint64{
				{Netns: own, Qtype: a}: 100, {Netns: own, Qtype: aaaa}: 100, {Netns: other, Qtype: a}: 7, {Netns: unknown, Qtype: a}: 3,
				{Netns: pod, Qtype: a}: 50, {Netns: pod, Qtype: srv}: 5, {Netns: pod, Qtype: 0}: 2,
			},
			Responses: map[bpfdns.RespKey]uint64{
				{Netns: own, Rcode: 0}: 190, {Netns: other, Rcode: 0}: 6,
				{Netns: pod, Rcode: 0}: 45, {Netns: pod, Rcode: nxdomain}: 4, {Netns: pod, Rcode: servfail}: 1,
			},
			Latency:  latency,
			Timeouts: map[uint32]uint64{pod: 1},
			Drops:    map[bpfdns.DropKey]uint64{{Netns: pod, Reason: 2}: 3, {Netns: own, Reason: 6}: 1, {Netns: 0, Reason: 99}: 4},
			Stats:    stats,
		},
		nx:    map[uint64]uint64{0x22: 3, 0x33: 6, 0x44: 1},
		names: map[uint64]string{0x11: "api.shop.svc.cluster.local", 0x22: "db.example.com", 0x33: "nonexistent.example.com"},
	}
	view := golden.Node()
	reasons := map[uint32]string{2: "NO_SOCKET", 6: "NETFILTER_DROP"}
	c := &collector{deps: collectors.Deps{Net: view, Pods: view, Clock: &golden.Clock{T: golden.Now}}, probe: p,
		reason: func(r uint32) string {
			if n, ok := reasons[r]; ok {
				return n
			}
			return fmt.Sprint(r)
		},
		own: own, timeout: 5 * time.Second, swept: map[uint32]uint64{pod: 2, other: 1}, sweptAll: 3, live: 3, evicted: 2,
		forgetAfter: 2 * time.Minute, missing: map[uint32]time.Time{},
		topNames: 4, nameTimeouts: map[uint64]uint64{0x11: 4, 0x22: 1, 0x44: 2}}
	golden.Check(t, c)
}
