package loader

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// Overlap's 64 workers each block in the kernel at the same time (here
// 200 jobs of a 50 ms nanosleep, a blocking syscall like a netlink round
// trip), so the runtime makes a thread for each; the threads must be gone
// once Overlap returns, not kept idle for the agent's life (128 of them,
// 6 MiB of RSS, when two collectors attached to 1,000 interfaces).
func TestOverlapLeavesNoThreads(t *testing.T) {
	before := threads(t)
	jobs := make([]func(), 200)
	for i := range jobs {
		jobs[i] = func() {
			ts := unix.NsecToTimespec((50 * time.Millisecond).Nanoseconds())
			unix.Nanosleep(&ts, nil)
		}
	}
	var peak int
	done := make(chan struct{})
	go func() {
		defer close(done)
		Overlap(jobs)
	}()
	for {
		select {
		case <-done:
		case <-time.After(10 * time.Millisecond):
			peak = max(peak, threads(t))
			continue
		}
		break
	}
	if peak < before+inFlight/2 {
		t.Fatalf("at most %d threads during Overlap (%d before): the jobs did not block in parallel", peak, before)
	}
	// Threads exit a moment after their goroutine.
	deadline := time.Now().Add(5 * time.Second)
	after := threads(t)
	for after > before+4 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(20 * time.Millisecond)
		after = threads(t)
	}
	if after > before+4 {
		t.Errorf("%d threads after Overlap, %d before (%d during): idle threads kept", after, before, peak)
	}
	t.Logf("threads: %d before, %d at most during, %d after", before, peak, after)
}
