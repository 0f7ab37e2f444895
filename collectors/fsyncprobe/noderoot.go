package fsyncprobe

// Paths are the node's, and the agent sees the node's root at
// --fsyncprobe.host-root (/host/proc/1/root in the DaemonSet). The kernel
// resolves an absolute symlink met below such a root against the agent's
// own root, not the node's: /var/lib/etcd -> /mnt/etcd-disk, looked up as
// /host/proc/1/root/var/lib/etcd, names the container's /mnt/etcd-disk,
// which does not exist (the probe was down with no_path on such nodes).
// So symlinks are resolved here, one component at a time, as the node
// would; and the directories are then opened following no symlink at all,
// so that one swapped in after the resolution is refused, not followed.

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxLinks is the kernel's own limit on symlinks in one lookup (MAXSYMLINKS).
const maxLinks = 40

// resolveInRoot returns the node's path p with every symlink in it resolved
// as the node resolves it: an absolute target from the node's root (root),
// a relative one from the link's directory, ".." never above the root.
// Every component of the result existed, and was no symlink, when looked
// at.
func resolveInRoot(root, p string) (string, error) {
	rest := components(p)
	cur, links := "/", 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", &os.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(components(target), rest...)
	}
	return cur, nil
}

// components splits a path into its names, without empty ones and ".".
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// openInRoot opens the node's directory p (a path resolveInRoot returned)
// as an O_PATH descriptor, following no symlink on the way: openat2 with
// RESOLVE_IN_ROOT and RESOLVE_NO_SYMLINKS (Linux 5.6), and on kernels
// without it (or a seccomp profile that refuses it) one openat with
// O_NOFOLLOW per component. A component that became a symlink since it was
// resolved fails the open (ELOOP or ENOTDIR).
func openInRoot(root, p string) (*os.File, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(rfd)
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(rfd, p, how)
	for try := 0; errors.Is(err, unix.EAGAIN) && try < 3; try++ {
		// A rename or mount on the node raced the lookup, which
		// RESOLVE_IN_ROOT then refuses to guess about.
		fd, err = unix.Openat2(rfd, p, how)
	}
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		fd, err = walkNoFollow(rfd, p)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

func walkNoFollow(rfd int, p string) (int, error) {
	fd, err := unix.Openat(rfd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range components(p) {
		if c == ".." {
			unix.Close(fd)
			return -1, unix.ELOOP // not in a resolved path
		}
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// openNodeDir resolves and opens the node's directory p.
func openNodeDir(root, p string) (*os.File, error) {
	real, err := resolveInRoot(root, p)
	if err != nil {
		return nil, err
	}
	return openInRoot(root, real)
}

// openOwnDir opens the directory name in parent for reading, refusing a
// symlink (O_NOFOLLOW) or anything but a directory.
func openOwnDir(parent *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(parent.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func fstat(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(int(f.Fd()), &st)
	return st, err
}
