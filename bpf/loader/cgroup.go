package loader

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// privateCgroupMountPoint exists in every sysfs with cgroup v2 support.
const privateCgroupMountPoint = "/sys/fs/cgroup"

// PrivateCgroupRoot opens the root of the cgroup v2 hierarchy when none is
// mounted where the agent can see it (inside `ip netns exec`, which mounts
// a fresh sysfs without cgroup2 on it; a container without the host's
// /sys/fs/cgroup): one locked thread makes a private mount namespace,
// mounts cgroup2 there, opens the root and unmounts it again, so the
// host's mounts are never touched. The open directory keeps the hierarchy
// reachable: attach through /proc/self/fd/N (a magic link, resolved from
// the open file, not through any mount namespace). The root is the one of
// the agent's cgroup namespace: the host's, for a DaemonSet on the host's.
func PrivateCgroupRoot() (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: Go ends a locked thread when its goroutine
		// returns, and with it the private mount namespace.
		runtime.LockOSThread()
		f, err := func() (*os.File, error) {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return nil, fmt.Errorf("no cgroup2 mounted, and cannot make a private mount namespace to mount one: unshare: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return nil, fmt.Errorf("no cgroup2 mounted: make mounts private: %w", err)
			}
			if err := unix.Mount("cgroup2", privateCgroupMountPoint, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); err != nil {
				return nil, fmt.Errorf("no cgroup2 mounted, and mounting it privately failed (a cgroup v1 node?): %w", err)
			}
			defer unix.Unmount(privateCgroupMountPoint, unix.MNT_DETACH)
			f, err := os.OpenFile(privateCgroupMountPoint, os.O_RDONLY|unix.O_DIRECTORY, 0)
			if err != nil {
				return nil, fmt.Errorf("open the private cgroup2 root: %w", err)
			}
			return f, nil
		}()
		done <- result{f, err}
	}()
	r := <-done
	return r.f, r.err
}
