package fsynctrace

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	bpffsync "github.com/netsonde/netsonde/bpf/fsynctrace"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// fixedReader serves fixed counts.
type fixedReader struct {
	hist map[bpffsync.HistKey]uint64
	sums map[bpffsync.SumKey]uint64
}

func (f fixedReader) Hooks() map[string]string {
	return map[string]string{"ext4_sync_file_enter": "tp_btf", "ext4_sync_file_exit": "tp_btf"}
}
func (f fixedReader) Full() (map[string]uint64, error) {
	return map[string]uint64{"fsynctrace_starts": 0, "fsynctrace_hist": 2, "fsynctrace_sums": 1}, nil
}

func (f fixedReader) Read() (map[bpffsync.HistKey]uint64, map[bpffsync.SumKey]uint64, error) {
	return f.hist, f.sums, nil
}
func (f fixedReader) Close() error { return nil }

// fixtureSys is a sysfs root whose dev/block/MAJOR:MINOR entries link to
// the uevent fixtures in testdata/sysfs, as /sys/dev/block's entries are
// links into /sys/devices. The links are made at run time: a ':' in a
// file name is not allowed in a Go module's zip.
func fixtureSys(t *testing.T, devs map[string]string) string {
	t.Helper()
	sys := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sys, "dev", "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	for mm, name := range devs {
		target, err := filepath.Abs(filepath.Join("testdata", "sysfs", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(sys, "dev", "block", mm)); err != nil {
			t.Fatal(err)
		}
	}
	return sys
}

// TestGoldenMetrics: etcd's fsyncs on an NVMe disk (259:0, nvme0n1) and
// containerd's on a SATA disk (8:16, sdb), as the kernel counts them.
func TestGoldenMetrics(t *testing.T) {
	const nvme, sdb = 259 << 20 /* minor 0 */, 8<<20 | 16
	comm := func(s string) (c [16]int8) {
		for i := range len(s) {
			c[i] = int8(s[i])
		}
		return c
	}
	hist := func(name string, dev uint32, counts map[uint32]uint64, out map[bpffsync.HistKey]uint64) {
		for b, n := range counts {
			out[bpffsync.HistKey{Comm: comm(name), Dev: dev, Bucket: b}] = n
		}
	}
	r := fixedReader{hist: map[bpffsync.HistKey]uint64{}, sums: map[bpffsync.SumKey]uint64{
		{Comm: comm("etcd"), Dev: nvme}:      uint64(681500 * time.Microsecond),
		{Comm: comm("containerd"), Dev: sdb}: uint64(743200 * time.Microsecond),
	}}
	// Buckets by index into bounds: 0 ≤125µs, 1 ≤250µs, 2 ≤500µs, 3 ≤1ms,
	// 4 ≤2ms, 5 ≤4ms, 6 ≤8ms, 7 ≤10ms, 8 ≤16ms, ..., 12 ≤256ms, ..., 18
	// above 8.192s; the sums lie within what the buckets allow.
	hist("etcd", nvme, map[uint32]uint64{0: 210, 1: 1840, 2: 960, 3: 75, 4: 12, 5: 3, 7: 1}, r.hist)
	hist("containerd", sdb, map[uint32]uint64{3: 4, 4: 38, 5: 61, 6: 22, 7: 9, 8: 5, 9: 2, 12: 1}, r.hist)

	sys := fixtureSys(t, map[string]string{"259:0": "nvme0n1", "8:16": "sdb"})
	tr := &tracer{deps: collectors.Deps{SysPath: sys}, t: r, devNames: map[uint32]string{}}
	golden.Check(t, tr)
}
