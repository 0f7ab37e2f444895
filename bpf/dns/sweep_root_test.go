package dns

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestSweepArray: queries run through the egress program fill slots of
// the in-flight array; a sweep closes the old ones by compare-and-swap on
// their ts, after which their answers match nothing, and a later query
// is still answered.
func TestSweepArray(t *testing.T) {
	p, progs := loadForTest(t, "")
	eg, in := progs[ProgramEgress], progs[ProgramIngress]
	answer := func(id uint16) []byte { return answerPacket(id, "ok.test", 1, 0x8000) }
	for id := uint16(1); id <= 3; id++ {
		run(t, eg, packet(40000, 53, dnsQuery(id, "ok.test", 1)))
	}
	sw, err := p.Sweep(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Live != 3 || len(sw.ByOwner) != 0 {
		t.Fatalf("sweep with a long timeout: %+v, want 3 live and none closed", sw)
	}
	time.Sleep(2 * time.Millisecond)
	sw, err = p.Sweep(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// A test run's socket is in the caller's namespace: one namespace.
	if sw.Live != 0 || len(sw.ByOwner) != 1 {
		t.Fatalf("sweep: %+v, want 3 closed in one netns", sw)
	}
	for _, n := range sw.ByOwner {
		if n != 3 {
			t.Fatalf("sweep: %+v, want 3 closed", sw)
		}
	}
	if sw, err = p.Sweep(time.Millisecond); err != nil || sw.Live != 0 || len(sw.ByOwner) != 0 {
		t.Fatalf("second sweep: %+v, %v; want nothing", sw, err)
	}
	run(t, in, answer(1))
	if n := stat(t, p, StatUnmatched); n != 1 {
		t.Errorf("unmatched after the sweep: %d, want 1", n)
	}
	run(t, eg, packet(40000, 53, dnsQuery(4, "ok.test", 1)))
	run(t, in, answer(4))
	if n := stat(t, p, StatAnswered); n != 1 {
		t.Errorf("answered: %d, want 1", n)
	}
	if sw, err = p.Sweep(time.Millisecond); err != nil || sw.Live != 0 || len(sw.ByOwner) != 0 {
		t.Fatalf("sweep after the answer: %+v, %v; want nothing", sw, err)
	}
}

// TestBucketOfTwo: in a table of one bucket (two slots), two queries are
// both in flight and answered; a retry finds its own slot; a third query
// displaces the older one in time (evicted, its answer then matches
// nothing), and one after its timeout is counted as a timeout, not an
// eviction. One owner, whose quota is more than the table (TestOwnerQuota
// has two, with quotas).
func TestBucketOfTwo(t *testing.T) {
	const timeout = 200 * time.Millisecond
	p, eg, in := loadOneBucket(t, timeout, 3)
	query := func(id uint16) { run(t, eg, packet(40000, 53, dnsQuery(id, "ok.test", 1))) }
	answer := func(id uint16) { run(t, in, answerPacket(id, "ok.test", 1, 0x8000)) }
	want := func(when string, stats map[int]uint64, timeouts uint64) {
		t.Helper()
		c := readStats(t, p, when, stats)
		var to uint64
		for _, n := range c.Timeouts {
			to += n
		}
		if to != timeouts {
			t.Errorf("%s: %d timeouts, want %d", when, to, timeouts)
		}
	}
	query(1)
	query(2)
	query(1) // a retry: its own slot, not the other's
	want("two queries and a retry", map[int]uint64{StatTracked: 2, StatRetransmitted: 1, StatEvicted: 0, StatNotTracked: 0}, 0)
	query(3) // displaces 2, older than 1's retry
	want("a third query", map[int]uint64{StatTracked: 3, StatEvicted: 1}, 0)
	answer(2)
	answer(1)
	answer(3)
	want("answers", map[int]uint64{StatAnswered: 2, StatUnmatched: 1}, 0)

	query(4)
	query(5)
	time.Sleep(timeout + 50*time.Millisecond)
	query(6) // displaces 4, past its timeout: a timeout
	want("a query displacing an expired one", map[int]uint64{StatTracked: 6, StatEvicted: 1}, 1)
	sw, err := p.Sweep(timeout)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range sw.ByOwner {
		n += int(c)
	}
	if n != 1 || sw.Live != 1 {
		t.Errorf("sweep: %+v, want 5 closed and 6 live", sw)
	}
	answer(6)
	want("the last answer", map[int]uint64{StatAnswered: 3, StatUnmatched: 1, StatEvicted: 1}, 1)
}

// TestOwnerQuota: two owners (the network namespaces the test runs the
// programs from) share a table of one bucket, with a quota of two slots
// each. The first owner, at its quota, is refused (counted for it); the
// second, with fewer in flight, displaces the first's older query; the
// first's further queries then displace only its own, and the second's
// query stays to be answered. An owner at its quota takes back its own
// expired slot (a timeout), and the per-owner counts come back to 0 as
// answers, displacements and the sweep free the slots.
func TestOwnerQuota(t *testing.T) {
	// Long enough that no query expires before the test answers it on a
	// loaded machine (fresh-node at a load average of 20 saw one of two
	// answers come after 200 ms, counted late, not answered).
	const timeout = time.Second
	p, eg, in := loadOneBucket(t, timeout, 2)
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	ia, ib := a.Cookie(t), b.Cookie(t)
	// A test run's socket is in the namespace of the thread that runs it.
	in_ := func(ns *testenv.Netns, prog *ebpf.Program, pkt []byte) {
		t.Helper()
		if err := ns.Do(func() error {
			ret, err := prog.Run(&ebpf.RunOptions{Data: pkt})
			if err == nil && ret != 1 {
				err = fmt.Errorf("program returned %d", ret)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	query := func(ns *testenv.Netns, id uint16) { in_(ns, eg, packet(40000, 53, dnsQuery(id, "ok.test", 1))) }
	answer := func(ns *testenv.Netns, id uint16) {
		in_(ns, in, answerPacket(id, "ok.test", 1, 0x8000))
	}
	owned := func(owner uint64) int64 {
		t.Helper()
		var n int64
		if err := p.maps.OwnerInflight.Lookup(uint32(ownerIndex(owner, 0x7fff)), &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := func(when string, stats map[int]uint64, inA, inB int64, refusedA uint64) {
		t.Helper()
		c := readStats(t, p, when, stats)
		if c.Refused[ia] != refusedA || c.Refused[ib] != 0 {
			t.Errorf("%s: refused %v, want %d for the first owner", when, c.Refused, refusedA)
		}
		if a, b := owned(ia), owned(ib); a != inA || b != inB {
			t.Errorf("%s: in flight %d and %d, want %d and %d", when, a, b, inA, inB)
		}
	}
	query(a, 1)
	query(a, 2)
	query(a, 3) // at its quota
	want("the first owner at its quota", map[int]uint64{StatTracked: 2, StatRefused: 1, StatEvicted: 0}, 2, 0, 1)
	query(b, 1) // displaces a's query 1: a has more in flight
	want("the second owner", map[int]uint64{StatTracked: 3, StatRefused: 1, StatEvicted: 1}, 1, 1, 1)
	for id := uint16(4); id < 9; id++ {
		query(a, id) // each displaces a's own previous one, never b's
	}
	want("the first owner's flood", map[int]uint64{StatTracked: 8, StatEvicted: 6, StatNotTracked: 0}, 1, 1, 1)
	answer(b, 1)
	answer(a, 8)
	want("answers", map[int]uint64{StatAnswered: 2, StatUnmatched: 0}, 0, 0, 1)

	query(a, 10)
	query(a, 11)
	time.Sleep(timeout + 50*time.Millisecond)
	query(a, 12) // at its quota, takes back its own expired slot
	want("an owner at its quota with an expired query", map[int]uint64{StatTracked: 11, StatRefused: 1, StatEvicted: 6}, 2, 0, 1)
	if c := readStats(t, p, "the expired query", nil); c.Timeouts[ia] != 1 {
		t.Errorf("timeouts %v, want 1 for the first owner", c.Timeouts)
	}
	time.Sleep(timeout + 50*time.Millisecond)
	sw, err := p.Sweep(timeout)
	if err != nil {
		t.Fatal(err)
	}
	if sw.ByOwner[ia] != 2 || sw.Live != 0 {
		t.Errorf("sweep: %+v, want 2 closed for the first owner", sw)
	}
	want("the sweep", map[int]uint64{StatTracked: 11}, 0, 0, 1)
}
