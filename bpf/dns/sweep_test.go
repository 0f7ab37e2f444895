package dns

import (
	"testing"
	"time"
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
