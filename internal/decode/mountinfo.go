package decode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// CgroupRoot returns the mount point of the cgroup v2 hierarchy whose root
// is mounted (the root "/" of the hierarchy, not a container's subtree) in
// a mountinfo file.
func CgroupRoot(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	return parseCgroupRoot(f)
}

func parseCgroupRoot(r io.Reader) (string, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	var sub string
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		f := strings.Fields(s.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(f) || f[sep+1] != "cgroup2" {
			continue
		}
		if f[3] == "/" {
			return unescapeMount(f[4]), nil
		}
		if sub == "" {
			sub = f[3]
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if sub != "" {
		// A container's own cgroup namespace: attaching there would see
		// only the container's sockets, never the pods'.
		return "", fmt.Errorf("cgroup2 is mounted only from %q, not its root: mount the host's /sys/fs/cgroup (a hostPath volume) and give its path", sub)
	}
	return "", errors.New("no cgroup2 mount: the node must use cgroup v2")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
