package fragments

import (
	"testing"

	bpffrag "github.com/netsonde/netsonde/bpf/fragments"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// fixedCounter serves fixed counts, attached by TCX to four interfaces.
type fixedCounter struct {
	counts map[bpffrag.Key]uint64
	forgot []bpffrag.Key
}

func (f *fixedCounter) Hooks() map[string]string {
	return map[string]string{bpffrag.ProgramICMPSend: "tp_btf"}
}
func (f *fixedCounter) Read() (map[bpffrag.Key]uint64, error) { return f.counts, nil }
func (f *fixedCounter) Full() (uint64, error)                 { return 5, nil }
func (f *fixedCounter) Forget(keys []bpffrag.Key)             { f.forgot = append(f.forgot, keys...) }
func (f *fixedCounter) Close() error                          { return nil }

// TestGoldenMetrics: fragments and ICMP frag-needed on the fixture node's
// interfaces (a vanished ifindex is forgotten, not shown), and the
// kernel's counters from testdata/proc/net/snmp{,6}.
func TestGoldenMetrics(t *testing.T) {
	key := func(ifindex int, dir, family, what uint8) bpffrag.Key {
		return bpffrag.Key{Ifindex: uint32(ifindex), Direction: dir, Family: family, What: what}
	}
	gone := key(golden.IfGone, bpffrag.Ingress, 4, bpffrag.WhatFragment)
	f := &fixedCounter{counts: map[bpffrag.Key]uint64{
		key(golden.IfEth0, bpffrag.Ingress, 4, bpffrag.WhatFragment):       120,
		key(golden.IfEth0, bpffrag.Egress, 4, bpffrag.WhatFragment):        80,
		key(golden.IfEth0, bpffrag.Ingress, 6, bpffrag.WhatFragment):       3,
		key(golden.IfFlannel, bpffrag.Egress, 4, bpffrag.WhatFragNeeded):   7,
		key(golden.IfPodVeth, bpffrag.Ingress, 4, bpffrag.WhatFragNeeded):  2,
		key(golden.IfOtherVeth, bpffrag.Egress, 6, bpffrag.WhatFragNeeded): 1,
		gone: 9,
	}}
	view := golden.Node()
	c := &collector{deps: collectors.Deps{Net: view, Pods: view, Proc: collectors.ProcDir("testdata/proc")}, c: f,
		ifaces: collectors.FixedInterfaces(map[int]bool{golden.IfEth0: false, golden.IfFlannel: false, golden.IfPodVeth: false, golden.IfOtherVeth: false}, "tcx")}
	golden.Check(t, c)
	if len(f.forgot) != 1 || f.forgot[0] != gone {
		t.Errorf("forgot %v, want the vanished ifindex's key only", f.forgot)
	}
}
