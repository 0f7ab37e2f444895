package drops

import (
	"log/slog"
	"testing"
	"time"

	bpfdrops "github.com/netsonde/netsonde/bpf/drops"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/dropreason"
	"github.com/netsonde/netsonde/internal/golden"
)

// fixedProbe serves fixed counts.
type fixedProbe struct {
	counts bpfdrops.Counts
	forgot []bpfdrops.Key
}

func (p *fixedProbe) Read() (bpfdrops.Counts, error) { return p.counts, nil }
func (p *fixedProbe) Hooks() map[string]string       { return map[string]string{bpfdrops.Program: "tp_btf"} }
func (p *fixedProbe) Forget(keys []bpfdrops.Key) map[bpfdrops.Key]uint64 {
	p.forgot = append(p.forgot, keys...)
	return nil
}
func (p *fixedProbe) Close() error { return nil }

// TestGoldenMetrics: drops on the fixture node's interfaces, in the pod's
// namespace (named after the pod), in a namespace no pod owns, in one the
// view has not met (left for a later scrape), on a vanished ifindex, with
// no interface or namespace at all, an EtherType folded into "other", the
// overflow slots and the drops a quota refused a key.
func TestGoldenMetrics(t *testing.T) {
	const (
		noSocket, csum, netfilter, otherhost, unnamed = 2, 5, 6, 16, 200
	)
	key := func(reason uint32, netns uint64, ifindex int, proto uint16) bpfdrops.Key {
		return bpfdrops.Key{Reason: reason, Netns: netns, Ifindex: uint32(ifindex), Protocol: proto}
	}
	p := &fixedProbe{counts: bpfdrops.Counts{
		ByKey: map[bpfdrops.Key]uint64{
			key(noSocket, golden.OwnNetns, golden.IfEth0, 0x0800):                    17,
			key(otherhost, golden.OwnNetns, golden.IfCNI0, 0x86dd):                   4,
			key(netfilter, golden.OwnNetns, golden.IfPodVeth, 0x0806):                2,
			key(noSocket, golden.OwnNetns, 0, 0x0800):                                3,
			key(noSocket, golden.OwnNetns, golden.IfGone, 0x0800):                    5, // summed with the one above
			key(netfilter, golden.PodNetns, golden.IfNsEth0, 0x0800):                 9,
			key(netfilter, golden.PodNetns, golden.IfNsEth0, bpfdrops.ProtocolOther): 2, // any unknown EtherType
			key(csum, golden.OtherNetns, golden.IfNsEth0, 0x86dd):                    1,
			key(unnamed, golden.OtherNetns, golden.IfNsEth0, 0x88cc):                 6,
			key(noSocket, golden.UnknownNetns, golden.IfNsEth0, 0x0800):              11, // not yet: asked for
			key(otherhost, 0, 0, 0):                                                  8,
		},
		Overflow: map[uint32]uint64{netfilter: 40, noSocket: 7},
		Refused:  map[uint32]uint64{netfilter: 3},
		Lost:     12,
	}}
	view := golden.Node()
	deps := collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view, Clock: &golden.Clock{T: golden.Now}}
	reasons := dropreason.Names{noSocket: "NO_SOCKET", csum: "TCP_CSUM", netfilter: "NETFILTER_DROP", otherhost: "OTHERHOST"}
	c := newCollector(deps, p, reasons, 2*time.Minute)
	golden.Check(t, c)
	if len(p.forgot) != 0 {
		t.Errorf("forgot %v on the first scrape", p.forgot)
	}
}
