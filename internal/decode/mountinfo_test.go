package decode

import (
	"strings"
	"testing"
)

func TestParseCgroupRoot(t *testing.T) {
	for _, c := range []struct {
		name, mountinfo, want, err string
	}{
		{"host", `24 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
25 30 0:23 / /proc rw - proc proc rw`, "/sys/fs/cgroup", ""},
		{"hostPath volume beside the container's own", `600 590 0:30 /kubepods/pod1/abc /sys/fs/cgroup ro - cgroup2 cgroup rw
601 590 0:30 / /host/sys/fs/cgroup rw - cgroup2 cgroup rw`, "/host/sys/fs/cgroup", ""},
		{"escaped", `24 30 0:22 / /mnt/my\040cgroup rw - cgroup2 cgroup2 rw`, "/mnt/my cgroup", ""},
		{"only a container's subtree", `600 590 0:30 /kubepods/pod1/abc /sys/fs/cgroup ro - cgroup2 cgroup rw`, "", "only from"},
		{"cgroup v1", `24 30 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory`, "", "no cgroup2"},
	} {
		got, err := parseCgroupRoot(strings.NewReader(c.mountinfo))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}

func FuzzParseCgroupRoot(f *testing.F) {
	f.Add("24 30 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw")
	f.Add("1 2 3 4 5 - cgroup2")
	f.Add(`1 2 3 / \0 - cgroup2 x`)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseCgroupRoot(strings.NewReader(s))
		if err == nil && got == "" {
			t.Fatal("no error and no path")
		}
	})
}
