package dns

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

func TestSizeInflight(t *testing.T) {
	for _, c := range []struct{ max, want uint32 }{{0, DefaultMaxInflight}, {1, 2}, {2, 2}, {1000, 1024}, {1024, 1024}, {1025, 2048}} {
		spec, err := loadBpf()
		if err != nil {
			t.Fatal(err)
		}
		var specs bpfSpecs
		if err := spec.Assign(&specs); err != nil {
			t.Fatal(err)
		}
		if err := sizeInflight(&specs, c.max, 0); err != nil {
			t.Fatal(err)
		}
		if got := specs.Inflight.MaxEntries; got != c.want {
			t.Errorf("MaxInflight %d: %d slots, want %d", c.max, got, c.want)
		}
		var mask uint32
		if err := specs.InflightMask.Get(&mask); err != nil || mask != c.want-1 {
			t.Errorf("MaxInflight %d: mask %d (%v), want %d", c.max, mask, err, c.want-1)
		}
		// Each owner's quota: a quarter of the table by default.
		var q int64
		if err := specs.OwnerQuota.Get(&q); err != nil || q != int64(max(c.want/4, 1)) {
			t.Errorf("MaxInflight %d: quota %d (%v), want %d", c.max, q, err, max(c.want/4, 1))
		}
	}
}

// loadOneBucket loads the cgroup_skb programs for test runs with an
// in-flight table of one bucket (two slots), the timeout and each
// owner's quota.
func loadOneBucket(t *testing.T, timeout time.Duration, quota uint32) (*Probe, *ebpf.Program, *ebpf.Program) {
	t.Helper()
	p, progs := loadSpecForTest(t, "", func(specs *bpfSpecs) error {
		if err := specs.TimeoutNs.Set(uint64(timeout)); err != nil {
			return err
		}
		return sizeInflight(specs, 2, quota)
	})
	return p, progs[ProgramEgress], progs[ProgramIngress]
}

// readStats reads the probe's counts and checks the given stats.
func readStats(t *testing.T, p *Probe, when string, stats map[int]uint64) Counts {
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
	return c
}
