package agent

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// MemoryLimitEnv is the container's memory limit in bytes, which the Helm
// chart and the manifests set from resources.limits.memory through the
// Downward API (resourceFieldRef).
const MemoryLimitEnv = "NETSONDE_MEMORY_LIMIT"

// memoryLimitShare is the part of the container's limit given to the Go
// runtime as its soft limit: the rest is for what the runtime does not
// count (the binary's pages, thread stacks) so that the GC works harder
// before the kernel's OOM killer has to.
const memoryLimitShare = 0.9

// SetMemoryLimit sets the Go runtime's soft memory limit (GOMEMLIMIT) from
// the container's memory limit: $NETSONDE_MEMORY_LIMIT, else cgroup v2's
// memory.max of the agent's own cgroup. An explicit GOMEMLIMIT wins. It
// returns the limit set, 0 if none.
func SetMemoryLimit(cgroupRoot string) (int64, error) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil // the runtime already applied it
	}
	limit, err := containerLimit(cgroupRoot)
	if err != nil || limit <= 0 {
		return 0, err
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	return soft, nil
}

func containerLimit(cgroupRoot string) (int64, error) {
	if v := strings.TrimSpace(os.Getenv(MemoryLimitEnv)); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("$%s=%q: not a number of bytes: %w", MemoryLimitEnv, v, err)
		}
		return n, nil
	}
	// With a cgroup namespace (the default for containers on cgroup v2)
	// the container's own cgroup is the root of the mount.
	b, err := os.ReadFile(cgroupRoot + "/memory.max")
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // cgroup v1 or no cgroupfs: no limit known
	} else if err != nil {
		return 0, fmt.Errorf("read cgroup memory limit: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup memory.max %q: %w", s, err)
	}
	return n, nil
}
