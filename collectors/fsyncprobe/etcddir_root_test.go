package fsyncprobe_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// nodeRoot is a fresh directory standing for a node's root filesystem
// (--fsyncprobe.host-root), on the root (ext4) disk: the layouts below are
// built inside it.
func nodeRoot(t *testing.T) string {
	root := testenv.DiskDir(t)
	if err := os.MkdirAll(filepath.Join(root, "var/lib/etcd/member/wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/etcd/member/wal/0000000000000000-0000000000000000.wal"), []byte("etcd's"), 0o600); err != nil {
		t.Fatal(err)
	}
	return root
}

// listing is etcd's data directory as etcd's tools see it: every entry
// with its mode, size and modification time, and the directory's own
// modification time, which moves whenever anything is created or removed
// in it, however briefly.
func listing(t *testing.T, dir string) string {
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%s %v %d %d\n", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return b.String()
}

func names(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range entries {
		n = append(n, e.Name())
	}
	sort.Strings(n)
	return n
}

// watch samples f every few milliseconds until stop is closed.
func watch(f func(), stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
				f()
			}
		}
	}()
	return &wg
}

// mountDisk loop-mounts a fresh 64 MiB ext4 image, img, at dir (a disk of
// its own) until the test ends.
func mountDisk(t *testing.T, img, dir string) {
	testenv.RequireCommand(t, "mkfs.ext4", "losetup")
	testenv.Run(t, "truncate", "-s", "64M", img)
	testenv.Run(t, "mkfs.ext4", "-q", "-F", img)
	testenv.Run(t, "mount", "-o", "loop", img, dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
}

func probeSamples(t *testing.T, a *testenv.Agent, path string) float64 {
	s := a.Scrape(t).Series("netsonde_disk_fsync_duration_seconds", map[string]string{"path": path})
	if len(s) != 1 {
		return 0
	}
	return float64(s[0].Metric.GetHistogram().GetSampleCount())
}

func dev(t *testing.T, p string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Dev)
}

// With default flags on a node whose /var/lib/etcd is a plain directory,
// the probe writes in /var/lib/netsonde-fsync-probe (0700, the same
// filesystem by st_dev), and etcd's directory never changes, not even its
// modification time, while the probe records its samples; after the agent
// stops, the sibling is gone too.
func TestProbeBesideEtcdDir(t *testing.T) {
	testenv.RequireRoot(t)
	root := nodeRoot(t)
	etcd, sibling := filepath.Join(root, "var/lib/etcd"), filepath.Join(root, "var/lib/netsonde-fsync-probe")
	before := listing(t, etcd)
	var changed []string
	stop := make(chan struct{})
	wg := watch(func() {
		if now := listing(t, etcd); now != before {
			changed = append(changed, now)
		}
	}, stop)

	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe",
		"--fsyncprobe.host-root="+root, "--fsyncprobe.interval=1s", "--fsyncprobe.writes=10")
	testenv.Eventually(t, 10*time.Second, "20 probe samples on /var/lib/netsonde-fsync-probe", func() bool {
		return probeSamples(t, a, "/var/lib/netsonde-fsync-probe") >= 20
	})
	fi, err := os.Stat(sibling)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("probe directory mode %v, want 0700", fi.Mode().Perm())
	}
	if dev(t, sibling) != dev(t, etcd) {
		t.Error("probe directory is not on etcd's filesystem")
	}
	if up, ok := a.Scrape(t).Value("netsonde_disk_fsync_probe_up", map[string]string{"path": "/var/lib/netsonde-fsync-probe"}); !ok || up != 1 {
		t.Errorf("netsonde_disk_fsync_probe_up %v %v, want 1", up, ok)
	}
	testenv.StopAgent(t, a)
	close(stop)
	wg.Wait()
	if len(changed) > 0 {
		t.Errorf("etcd's directory changed %d times while the probe ran; first:\n%s\nwas:\n%s", len(changed), changed[0], before)
	}
	if _, err := os.Stat(sibling); !os.IsNotExist(err) {
		t.Errorf("probe directory left behind after the agent stopped (%v)", err)
	}
}

// When /var/lib/etcd is the mount point of a filesystem of its own (a
// dedicated disk; here a loop-mounted ext4 image), the probe measures that
// filesystem from a hidden directory inside it that exists only during a
// round: between rounds, and after the agent stops, etcd's directory lists
// exactly what it did. No sibling is made on the root disk, which is not
// the disk etcd writes to.
func TestProbeInsideEtcdMount(t *testing.T) {
	testenv.RequireRoot(t)
	root := nodeRoot(t)
	etcd := filepath.Join(root, "var/lib/etcd")
	mountDisk(t, filepath.Join(root, "etcd.img"), etcd)
	if err := os.MkdirAll(filepath.Join(etcd, "member/snap"), 0o700); err != nil {
		t.Fatal(err)
	}
	want := names(t, etcd)

	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe",
		"--fsyncprobe.host-root="+root, "--fsyncprobe.interval=1s", "--fsyncprobe.writes=10")
	const hidden = "/var/lib/etcd/.netsonde-fsync-probe"
	var seen, absent int
	var other []string
	stop := make(chan struct{})
	wg := watch(func() {
		got := names(t, etcd)
		switch strings.Join(got, " ") {
		case strings.Join(want, " "):
			absent++
		case strings.Join(append([]string{".netsonde-fsync-probe"}, want...), " "):
			seen++
		default:
			other = append(other, strings.Join(got, " "))
		}
	}, stop)
	testenv.Eventually(t, 15*time.Second, "20 probe samples in the hidden directory", func() bool {
		return probeSamples(t, a, hidden) >= 20
	})
	if up, ok := a.Scrape(t).Value("netsonde_disk_fsync_probe_up", map[string]string{"path": hidden}); !ok || up != 1 {
		t.Errorf("netsonde_disk_fsync_probe_up %v %v, want 1", up, ok)
	}
	testenv.StopAgent(t, a)
	close(stop)
	wg.Wait()
	t.Logf("etcd's directory sampled %d times without the probe's directory, %d with it (during a round)", absent, seen)
	if len(other) > 0 {
		t.Errorf("etcd's directory listed something else: %q", other[0])
	}
	// How long a round takes depends on the disk and the machine's load,
	// so the share of samples that see the directory is not a measure;
	// that it is gone between rounds is (and after the agent stops, below).
	if absent == 0 {
		t.Errorf("the hidden directory was there in all %d samples: it must exist only during a round", seen)
	}
	if got := names(t, etcd); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after the agent stopped etcd's directory lists %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/netsonde-fsync-probe")); !os.IsNotExist(err) {
		t.Errorf("a sibling was made on the root disk (%v), which etcd does not write to", err)
	}
}

// A node without /var/lib/etcd (a worker): the probe is down with reason
// no_path, and the agent serves everything else. A node whose /var/lib is
// read-only: down with read_only, etcd's directory untouched.
func TestProbeOffWithReason(t *testing.T) {
	testenv.RequireRoot(t)
	t.Run("worker", func(t *testing.T) {
		root := testenv.DiskDir(t)
		ns := testenv.NewNetns(t)
		a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe", "--collector.mtu",
			"--fsyncprobe.host-root="+root)
		m := a.Scrape(t)
		if up, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "fsyncprobe", "reason": "no_path"}); !ok || up != 0 {
			t.Errorf("fsyncprobe up %v %v, want 0 with reason no_path", up, ok)
		}
		if up, _ := m.Value("netsonde_collector_up", map[string]string{"collector": "mtu"}); up != 1 {
			t.Error("the mtu collector is not up beside it")
		}
		if _, err := os.Stat(filepath.Join(root, "var/lib/etcd")); !os.IsNotExist(err) {
			t.Errorf("/var/lib/etcd was created (%v)", err)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		root := testenv.DiskDir(t)
		varlib := filepath.Join(root, "var/lib")
		if err := os.MkdirAll(varlib, 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.Run(t, "mount", "-t", "tmpfs", "-o", "size=1m", "nsdvarlib", varlib)
		t.Cleanup(func() { exec.Command("umount", varlib).Run() })
		if err := os.Mkdir(filepath.Join(varlib, "etcd"), 0o700); err != nil {
			t.Fatal(err)
		}
		testenv.Run(t, "mount", "-o", "remount,ro", varlib)
		before := listing(t, filepath.Join(varlib, "etcd"))
		ns := testenv.NewNetns(t)
		a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe", "--collector.mtu",
			"--fsyncprobe.host-root="+root, "--fsyncprobe.interval=1s")
		testenv.Eventually(t, 5*time.Second, "probe down with read_only", func() bool {
			m := a.Scrape(t)
			up, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "fsyncprobe", "reason": "read_only"})
			pu, ok2 := m.Value("netsonde_disk_fsync_probe_up", map[string]string{"path": "/var/lib/netsonde-fsync-probe", "reason": "read_only"})
			return ok && up == 0 && ok2 && pu == 0
		})
		testenv.StopAgent(t, a)
		if after := listing(t, filepath.Join(varlib, "etcd")); after != before {
			t.Errorf("etcd's directory changed:\n%s\nwas\n%s", after, before)
		}
	})
}

// A node where an older netsonde probed inside etcd's directory: the agent
// removes what it left there at start, and probes beside it from then on.
func TestStaleProbeDirLeavesEtcdDir(t *testing.T) {
	testenv.RequireRoot(t)
	root := nodeRoot(t)
	stale := filepath.Join(root, "var/lib/etcd", ".netsonde-fsync-probe")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "probe-3"), make([]byte, 4600), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe",
		"--fsyncprobe.host-root="+root, "--fsyncprobe.interval=1s", "--fsyncprobe.writes=5")
	testenv.Eventually(t, 5*time.Second, "samples beside etcd's directory", func() bool {
		return probeSamples(t, a, "/var/lib/netsonde-fsync-probe") >= 5
	})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale probe directory is still in etcd's directory (%v)", err)
	}
	if got := names(t, filepath.Join(root, "var/lib/etcd")); strings.Join(got, " ") != "member" {
		t.Errorf("etcd's directory lists %v, want [member]", got)
	}
}
