package fsyncprobe_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// A node whose /var/lib/etcd is an absolute symlink to /mnt/etcd-disk, the
// agent seeing the node's root at --fsyncprobe.host-root (a directory
// here, /host/proc/1/root in the DaemonSet): the link is followed to the
// node's /mnt/etcd-disk, not the agent's (where there is none, and the
// probe was down with no_path). One round (the interval is an hour) of 10
// timed syncs gives exactly 10 samples, beside the disk when it is a plain
// directory and inside it when it is a disk of its own.
func TestProbeFollowsNodeSymlink(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		mount bool
		label string
	}{
		{"plain directory", false, "/mnt/netsonde-fsync-probe"},
		{"dedicated disk", true, "/mnt/etcd-disk/.netsonde-fsync-probe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := testenv.DiskDir(t)
			disk := filepath.Join(root, "mnt/etcd-disk")
			if err := os.MkdirAll(disk, 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.mount {
				mountDisk(t, filepath.Join(root, "etcd.img"), disk)
			}
			if err := os.MkdirAll(filepath.Join(disk, "member/wal"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(root, "var/lib"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/mnt/etcd-disk", filepath.Join(root, "var/lib/etcd")); err != nil {
				t.Fatal(err)
			}
			want := names(t, disk)

			ns := testenv.NewNetns(t)
			a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe",
				"--fsyncprobe.host-root="+root, "--fsyncprobe.interval=1h", "--fsyncprobe.writes=10")
			testenv.Eventually(t, 10*time.Second, "10 probe samples on "+tc.label, func() bool {
				return probeSamples(t, a, tc.label) >= 10
			})
			time.Sleep(500 * time.Millisecond)
			m := a.Scrape(t)
			if got := probeSamples(t, a, tc.label); got != 10 {
				t.Errorf("%v samples on %s, want exactly 10 (one round of 10 syncs)", got, tc.label)
			}
			if up, ok := m.Value("netsonde_disk_fsync_probe_up", map[string]string{"path": tc.label}); !ok || up != 1 {
				t.Errorf("netsonde_disk_fsync_probe_up{path=%q} %v %v, want 1", tc.label, up, ok)
			}
			if up, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "fsyncprobe"}); !ok || up != 1 {
				t.Errorf("fsyncprobe up %v %v, want 1", up, ok)
			}
			if s := m.Series("netsonde_collector_up", map[string]string{"reason": "no_path"}); len(s) != 0 {
				t.Errorf("a collector is down with no_path")
			}
			testenv.StopAgent(t, a)
			if got := names(t, disk); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("after the agent stopped etcd's disk lists %v, want %v", got, want)
			}
			if _, err := os.Stat(filepath.Join(root, "mnt/netsonde-fsync-probe")); !os.IsNotExist(err) {
				t.Errorf("probe directory left beside etcd's (%v)", err)
			}
		})
	}
}

// Someone on the node points the probe's directory names at a directory of
// their choosing (a relative link, so that an agent following it stays in
// the test's tree): the sibling beside etcd's directory and the hidden one
// inside it. The agent follows neither: nothing is written or removed
// there (it used to clear probe-* files in both at start), the probe is
// down with not_a_directory, and both links are left as they were.
func TestProbeRefusesSymlinkedDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	root := nodeRoot(t)
	victim := filepath.Join(root, "victim")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	// probe-N is a name the agent takes for a stale file of its own.
	if err := os.WriteFile(filepath.Join(victim, "probe-1"), []byte("not the agent's"), 0o644); err != nil {
		t.Fatal(err)
	}
	sibling, hidden := filepath.Join(root, "var/lib/netsonde-fsync-probe"), filepath.Join(root, "var/lib/etcd/.netsonde-fsync-probe")
	if err := os.Symlink("../../victim", sibling); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../victim", hidden); err != nil {
		t.Fatal(err)
	}
	before := listing(t, victim)

	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe",
		"--fsyncprobe.host-root="+root, "--fsyncprobe.interval=1s", "--fsyncprobe.writes=5")
	const label = "/var/lib/netsonde-fsync-probe"
	testenv.Eventually(t, 5*time.Second, "probe down with not_a_directory", func() bool {
		m := a.Scrape(t)
		up, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "fsyncprobe", "reason": "not_a_directory"})
		pu, ok2 := m.Value("netsonde_disk_fsync_probe_up", map[string]string{"path": label, "reason": "not_a_directory"})
		return ok && up == 0 && ok2 && pu == 0
	})
	time.Sleep(1500 * time.Millisecond) // another round
	if got := probeSamples(t, a, label); got != 0 {
		t.Errorf("%v samples through a symlinked directory, want 0", got)
	}
	testenv.StopAgent(t, a)
	if after := listing(t, victim); after != before {
		t.Errorf("the symlinks' target changed:\n%s\nwas\n%s", after, before)
	}
	for _, l := range []string{sibling, hidden} {
		if fi, err := os.Lstat(l); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: %v %v, want the symlink left as it was", l, fi, err)
		}
	}
}
