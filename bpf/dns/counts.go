package dns

import (
	"fmt"

	"github.com/cilium/ebpf"

	nbpf "github.com/netsonde/netsonde/bpf"
)

// Counts is what the kernel has counted since load.
type Counts struct {
	Queries   map[QueryKey]uint64
	Responses map[RespKey]uint64
	Latency   map[HistKey]uint64
	Timeouts  map[uint64]uint64
	// Refused counts, per owner, the queries not tracked because the
	// owner had its quota of the in-flight table.
	Refused map[uint64]uint64
	Drops   map[DropKey]uint64
	Stats   [statMax]uint64
}

// Read returns the kernel's counts.
func (p *Probe) Read() (Counts, error) {
	var c Counts
	var err error
	if c.Queries, err = nbpf.SumPerCPU[QueryKey](p.maps.Queries); err != nil {
		return c, err
	}
	if c.Responses, c.Latency, err = readAnswers(p.maps.Answers); err != nil {
		return c, err
	}
	if c.Timeouts, err = nbpf.SumPerCPU[uint64](p.maps.Timeouts); err != nil {
		return c, err
	}
	if c.Drops, err = nbpf.SumPerCPU[DropKey](p.maps.Drops); err != nil {
		return c, err
	}
	if c.Refused, err = nbpf.SumPerCPU[uint64](p.maps.Refused); err != nil {
		return c, err
	}
	// An older object (Options.Object) may have fewer counters.
	n := min(len(c.Stats), int(p.maps.Stats.MaxEntries()))
	for i := range n {
		if c.Stats[i], err = nbpf.SumArraySlot(p.maps.Stats, uint32(i)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// readAnswers sums the answers map's per-CPU values and spreads them into
// counts by rcode and by latency bucket, with only the non-zero ones (and
// the sum's bucket with any bucket), as if each were its own key.
func readAnswers(m *ebpf.Map) (map[RespKey]uint64, map[HistKey]uint64, error) {
	resp, lat := map[RespKey]uint64{}, map[HistKey]uint64{}
	var owner uint64
	var per []bpfAnsVal
	it := m.Iterate()
	for it.Next(&owner, &per) {
		var sum bpfAnsVal
		for _, v := range per {
			for i := range sum.Rcode {
				sum.Rcode[i] += v.Rcode[i]
			}
			for i := range sum.Bucket {
				sum.Bucket[i] += v.Bucket[i]
			}
			sum.Sum += v.Sum
		}
		for i, n := range sum.Rcode {
			if n > 0 {
				resp[RespKey{Owner: owner, Rcode: uint16(i)}] = n
			}
		}
		any := false
		for i, n := range sum.Bucket {
			if n > 0 {
				lat[HistKey{Owner: owner, Bucket: uint32(i)}] = n
				any = true
			}
		}
		if any {
			lat[HistKey{Owner: owner, Bucket: SumBucket}] = sum.Sum
		}
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("read answers: %w", err)
	}
	return resp, lat, nil
}

// Forget deletes the counters of owners and namespaces gone for good, so
// their series end and their room in the maps is freed: owners key the
// queries, answers, timeouts and refusals (network namespaces with
// HookCgroup, interfaces with HookTC), namespaces the drops. Apart, as an
// interface's index and a namespace's cookie are both small numbers.
func (p *Probe) Forget(c Counts, owners, namespaces map[uint64]bool) {
	gone := owners
	for k := range c.Queries {
		if gone[k.Owner] {
			_ = p.maps.Queries.Delete(k)
		}
	}
	for k := range c.Responses {
		if gone[k.Owner] {
			_ = p.maps.Answers.Delete(k.Owner)
		}
	}
	for k := range c.Timeouts {
		if gone[k] {
			_ = p.maps.Timeouts.Delete(k)
		}
	}
	for k := range c.Refused {
		if gone[k] {
			_ = p.maps.Refused.Delete(k)
		}
	}
	for k := range c.Drops {
		if namespaces[k.Netns] {
			_ = p.maps.Drops.Delete(k)
		}
	}
}

// Owners returns every owner the counts of queries, answers and timeouts
// name: network namespaces (HookCgroup) or interfaces (HookTC).
func (c Counts) Owners() map[uint64]bool {
	out := map[uint64]bool{}
	for k := range c.Queries {
		out[k.Owner] = true
	}
	for k := range c.Responses {
		out[k.Owner] = true
	}
	for k := range c.Latency {
		out[k.Owner] = true
	}
	for k := range c.Timeouts {
		out[k] = true
	}
	for k := range c.Refused {
		out[k] = true
	}
	return out
}

// DropNamespaces returns every network namespace the drop counts name
// (the namespace a packet was dropped in, whatever the hook).
func (c Counts) DropNamespaces() map[uint64]bool {
	out := map[uint64]bool{}
	for k := range c.Drops {
		out[k.Netns] = true
	}
	return out
}
