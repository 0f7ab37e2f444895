package fsynctrace_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/bpf/fsynctrace"
	"github.com/netsonde/netsonde/internal/testenv"
)

// syncs writes 2,300 bytes and fdatasyncs n times on a file in dir, from
// a thread named comm: the kernel's comm is the thread's.
func syncs(t *testing.T, dir, comm string, n int) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		// The thread keeps its new name: locked and never unlocked, it
		// ends with the goroutine.
		runtime.LockOSThread()
		errc <- func() error {
			name := append([]byte(comm), 0)
			if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
				return fmt.Errorf("name the thread: %w", err)
			}
			f, err := os.Create(filepath.Join(dir, comm))
			if err != nil {
				return err
			}
			defer f.Close()
			buf := make([]byte, 2300)
			for range n {
				if _, err := f.Write(buf); err != nil {
					return err
				}
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// With room for one (process, device) in the sums map, the first
// process's 20 syncs take it and each of the second's 30 is counted as
// full there, exactly; the histogram, which has room, counts both.
func TestMapFullCounted(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.DiskDir(t)
	var bounds [fsynctrace.NumBounds]uint64
	for i := range bounds {
		bounds[i] = uint64(125_000) << i
	}
	tr, err := fsynctrace.Load(fsynctrace.Options{Comms: []string{"nsdfull-a", "nsdfull-b"}, Bounds: bounds,
		MapSizes: map[string]uint32{"sums": 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	syncs(t, dir, "nsdfull-a", 20)
	syncs(t, dir, "nsdfull-b", 30)

	hist, sums, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	byComm := map[string]uint64{}
	for k, n := range hist {
		byComm[comm(k.Comm[:])] += n
	}
	if byComm["nsdfull-a"] != 20 || byComm["nsdfull-b"] != 30 || len(byComm) != 2 {
		t.Errorf("histogram counts by process %v, want nsdfull-a 20 and nsdfull-b 30", byComm)
	}
	if len(sums) != 1 {
		t.Errorf("sums %v, want one key", sums)
	}
	for k := range sums {
		if comm(k.Comm[:]) != "nsdfull-a" {
			t.Errorf("sums key of %q, want nsdfull-a's", comm(k.Comm[:]))
		}
	}
	full, err := tr.Full()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"fsynctrace_starts": 0, "fsynctrace_hist": 0, "fsynctrace_sums": 30}
	if fmt.Sprint(full) != fmt.Sprint(want) {
		t.Errorf("full %v, want %v", full, want)
	}
}

func comm(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
