package kernels_test

import (
	"os"
	"runtime"
	"testing"
)

// guest skips a test outside the VM hack/kernels/run.sh boots: the guest
// tests load modules' worth of state into a throwaway kernel and assume
// nothing else runs there.
func guest(t *testing.T) {
	t.Helper()
	if os.Getenv("NETSONDE_GUEST") != "1" {
		t.Skip("runs only inside the kernel matrix VM (NETSONDE_GUEST=1)")
	}
}

func TestGuestBoots(t *testing.T) {
	guest(t)
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s, %d CPUs", b, runtime.NumCPU())
}
