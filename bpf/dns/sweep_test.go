package dns

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestSweepArray: queries run through the egress program fill slots of
// the in-flight array; a sweep closes the old ones by compare-and-swap on
// their ts, after which their answers match nothing, and a later query
// is still answered.
func TestSweepArray(t *testing.T) {
	obj, progs := loadForTest(t, "")
	eg, in := progs[ProgramEgress], progs[ProgramIngress]
	p := &Probe{Object: obj}
	answer := func(id uint16) []byte { return answerPacket(id, "ok.test", 1, 0x8000) }
	for id := uint16(1); id <= 3; id++ {
		run(t, eg, packet(40000, 53, dnsQuery(id, "ok.test", 1)))
	}
	sw, err := p.Sweep(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Live != 3 || len(sw.ByNetns) != 0 {
		t.Fatalf("sweep with a long timeout: %+v, want 3 live and none closed", sw)
	}
	time.Sleep(2 * time.Millisecond)
	sw, err = p.Sweep(time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// A test run's socket is in the caller's namespace: one namespace.
	if sw.Live != 0 || len(sw.ByNetns) != 1 {
		t.Fatalf("sweep: %+v, want 3 closed in one netns", sw)
	}
	for _, n := range sw.ByNetns {
		if n != 3 {
			t.Fatalf("sweep: %+v, want 3 closed", sw)
		}
	}
	if sw, err = p.Sweep(time.Millisecond); err != nil || sw.Live != 0 || len(sw.ByNetns) != 0 {
		t.Fatalf("second sweep: %+v, %v; want nothing", sw, err)
	}
	run(t, in, answer(1))
	if n := stat(t, obj, StatUnmatched); n != 1 {
		t.Errorf("unmatched after the sweep: %d, want 1", n)
	}
	run(t, eg, packet(40000, 53, dnsQuery(4, "ok.test", 1)))
	run(t, in, answer(4))
	if n := stat(t, obj, StatAnswered); n != 1 {
		t.Errorf("answered: %d, want 1", n)
	}
	if sw, err = p.Sweep(time.Millisecond); err != nil || sw.Live != 0 || len(sw.ByNetns) != 0 {
		t.Fatalf("sweep after the answer: %+v, %v; want nothing", sw, err)
	}
}

func TestSizeInflight(t *testing.T) {
	for _, c := range []struct{ max, want uint32 }{{0, DefaultMaxInflight}, {1, 2}, {2, 2}, {1000, 1024}, {1024, 1024}, {1025, 2048}} {
		spec, err := loadBpf()
		if err != nil {
			t.Fatal(err)
		}
		if err := sizeInflight(spec, c.max); err != nil {
			t.Fatal(err)
		}
		if got := spec.Maps["inflight"].MaxEntries; got != c.want {
			t.Errorf("MaxInflight %d: %d slots, want %d", c.max, got, c.want)
		}
		var mask uint32
		if err := spec.Variables["inflight_mask"].Get(&mask); err != nil || mask != c.want-1 {
			t.Errorf("MaxInflight %d: mask %d (%v), want %d", c.max, mask, err, c.want-1)
		}
	}
}

// TestBucketOfTwo: in a table of one bucket (two slots), two queries are
// both in flight and answered; a retry finds its own slot; a third query
// displaces the older one in time (evicted, its answer then matches
// nothing), and one after its timeout is counted as a timeout, not an
// eviction.
func TestBucketOfTwo(t *testing.T) {
	const timeout = 200 * time.Millisecond
	obj, progs := loadSpecForTest(t, "", func(spec *ebpf.CollectionSpec) error {
		if err := spec.Variables["timeout_ns"].Set(uint64(timeout)); err != nil {
			return err
		}
		return sizeInflight(spec, 2)
	})
	eg, in := progs[ProgramEgress], progs[ProgramIngress]
	p := &Probe{Object: obj}
	query := func(id uint16) { run(t, eg, packet(40000, 53, dnsQuery(id, "ok.test", 1))) }
	answer := func(id uint16) { run(t, in, answerPacket(id, "ok.test", 1, 0x8000)) }
	want := func(when string, stats map[int]uint64, timeouts uint64) {
		t.Helper()
		c, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range stats {
			if c.Stats[i] != n {
				t.Errorf("%s: stat %d is %d, want %d", when, i, c.Stats[i], n)
			}
		}
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
	for _, c := range sw.ByNetns {
		n += int(c)
	}
	if n != 1 || sw.Live != 1 {
		t.Errorf("sweep: %+v, want 5 closed and 6 live", sw)
	}
	answer(6)
	want("the last answer", map[int]uint64{StatAnswered: 3, StatUnmatched: 1, StatEvicted: 1}, 1)
}
