package loader

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// withPrivateMount mounts a filesystem of fstype at target for the
// duration of use, in a mount namespace of one dedicated OS thread: that
// thread leaves the process's mount namespace (unshare(CLONE_NEWNS) is
// allowed for one thread of a multi-threaded process) and makes its mounts
// private, so the host's mounts are never touched; the mount goes with the
// thread, which is never returned to Go's pool. What says what is missing
// is in the errors, so what names the filesystem ("tracefs", "cgroup2").
func withPrivateMount(what, fstype, target string, flags uintptr, use func() error) error {
	done := make(chan error, 1)
	go func() {
		// Never unlocked: Go ends a locked thread when its goroutine
		// returns, and with it the private mount namespace.
		runtime.LockOSThread()
		done <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("no %s mounted, and cannot make a private mount namespace to mount one: unshare: %w", what, err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("no %s mounted: make mounts private: %w", what, err)
			}
			if err := unix.Mount(fstype, target, fstype, flags, ""); err != nil {
				return fmt.Errorf("no %s mounted, and mounting one privately failed: %w", what, err)
			}
			// The mount namespace ends with this thread anyway: an
			// unmount that fails leaves nothing behind.
			defer func() { _ = unix.Unmount(target, unix.MNT_DETACH) }()
			return use()
		}()
	}()
	return <-done
}

// privateCgroupMountPoint exists in every sysfs with cgroup v2 support.
const privateCgroupMountPoint = "/sys/fs/cgroup"

// PrivateCgroupRoot opens the root of the cgroup v2 hierarchy when none is
// mounted where the agent can see it (inside `ip netns exec`, which mounts
// a fresh sysfs without cgroup2 on it; a container without the host's
// /sys/fs/cgroup), through a private mount (withPrivateMount). The open
// directory keeps the hierarchy reachable once the mount is gone: attach
// through /proc/self/fd/N (a magic link, resolved from the open file, not
// through any mount namespace). The root is the one of the agent's cgroup
// namespace: the host's, for a DaemonSet on the host's. On a cgroup v1
// node the mount fails.
func PrivateCgroupRoot() (*os.File, error) {
	var f *os.File
	err := withPrivateMount("cgroup2", "cgroup2", privateCgroupMountPoint, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, func() error {
		var err error
		f, err = os.OpenFile(privateCgroupMountPoint, os.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return fmt.Errorf("open the private cgroup2 root: %w", err)
		}
		return nil
	})
	return f, err
}
