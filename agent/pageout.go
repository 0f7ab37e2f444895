package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// releasePages hands back the pages of the agent's own binary that
// only start-up touched, and returns how many bytes of it were mapped
// before.
//
// Why: most of the agent's RSS beyond its heap is its binary's code and
// read-only data (30 MB on disk; client-go, cilium/ebpf and netlink), and
// most of that is mapped once by start-up only: flag parsing, loading and
// verifying the BPF programs, client-go's scheme registration, the first
// list of the cluster. Those pages stay mapped, and counted in RSS and in
// the container's working set, for the agent's whole life, while the
// kernel's fault-around and read-around map up to 64 KiB, and read ahead
// more, around every page start-up touched. Here, once start-up is over:
//   - MADV_RANDOM on the binary's read-only mappings: from now on a fault
//     reads and maps the page it needs, not its neighbours;
//   - MADV_PAGEOUT unmaps them (and reclaims those no one else maps);
//   - POSIX_FADV_DONTNEED drops the file's clean pages from the page cache,
//     so fault-around finds nothing cached to map beside a faulting page.
//
// What the steady state runs (scrapes, the host view's refresh, the mesh,
// the runtime and GC) faults back in over the first scrapes, a page at a
// time, and stays. Measured at 1,000 interfaces (BENCHMARKS.md): the
// binary's resident pages fall from about 22 MB to about 8 MB, with no
// major fault in steady state.
//
// The advice is best effort: a kernel without MADV_PAGEOUT (before 5.4)
// keeps every page mapped, which costs memory, not correctness.
func releasePages() (mapped int64, err error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("own binary: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("own mappings: %w", err)
	}
	ranges, err := readOnlyMappings(maps, exe)
	if err != nil {
		return 0, err
	}
	if len(ranges) == 0 {
		return 0, fmt.Errorf("no read-only mapping of %s in /proc/self/maps", exe)
	}
	for _, r := range ranges {
		mapped += int64(r[1] - r[0])
		if err := madvise(r[0], r[1]-r[0], unix.MADV_RANDOM); err != nil {
			return mapped, fmt.Errorf("madvise random %#x-%#x: %w", r[0], r[1], err)
		}
		if err := madvise(r[0], r[1]-r[0], unix.MADV_PAGEOUT); err != nil {
			return mapped, fmt.Errorf("madvise pageout %#x-%#x: %w", r[0], r[1], err)
		}
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return mapped, fmt.Errorf("own binary: %w", err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return mapped, fmt.Errorf("fadvise %s: %w", exe, err)
	}
	return mapped, nil
}

// madvise takes the range as numbers: the pages are the binary's own
// mappings, which Go never frees or moves, so no unsafe.Pointer is made.
func madvise(addr, length uintptr, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

// readOnlyMappings returns the start and end of every mapping of path in
// a /proc/PID/maps text that is not writable (code, read-only data): the
// writable one holds Go's data and bss, which are the process's own.
func readOnlyMappings(maps []byte, path string) ([][2]uintptr, error) {
	var out [][2]uintptr
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// "00400000-010e6000 r-xp 00000000 fd:00 1234   /path"
		f := bytes.Fields(sc.Bytes())
		if len(f) < 6 || string(bytes.Join(f[5:], []byte(" "))) != path {
			continue
		}
		if len(f[1]) < 2 || f[1][1] == 'w' {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		a, err := strconv.ParseUint(string(lo), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("maps: bad range %q: %w", f[0], err)
		}
		b, err := strconv.ParseUint(string(hi), 16, 64)
		if err != nil || b <= a {
			return nil, fmt.Errorf("maps: bad range %q", f[0])
		}
		out = append(out, [2]uintptr{uintptr(a), uintptr(b)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("maps: %w", err)
	}
	return out, nil
}

// ReleaseStartupPages hands back the binary's pages that start-up has
// touched so far (releasePages), logged: main calls it first thing, Run
// once the collectors have started and once the cluster is joined. A
// failure costs memory, not correctness: it is logged at debug level.
func ReleaseStartupPages(logger *slog.Logger) {
	mapped, err := releasePages()
	if err != nil {
		logger.Debug("start-up pages of the binary kept", "err", err)
		return
	}
	logger.Debug("start-up pages of the binary released", "mapped_bytes", mapped)
}
