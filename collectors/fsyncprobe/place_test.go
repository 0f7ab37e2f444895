package fsyncprobe

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/collectors"
)

// Where the probe goes, decided from the node's layout alone (no root
// needed: the "node" is a directory tree).
func TestPlaceProbe(t *testing.T) {
	root := t.TempDir()
	if _, err := placeProbe(root, "/var/lib/etcd"); collectors.ReasonOf(err, "") != "no_path" {
		t.Errorf("no etcd directory: %v, want down with no_path", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/etcd"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := placeProbe(root, "/var/lib/etcd"); collectors.ReasonOf(err, "") != "no_path" {
		t.Errorf("etcd path is a file: %v, want down with no_path", err)
	}
	os.Remove(filepath.Join(root, "var/lib/etcd"))
	if err := os.Mkdir(filepath.Join(root, "var/lib/etcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := placeProbe(root, "/var/lib/etcd/")
	if err != nil {
		t.Fatal(err)
	}
	want := target{root: root, label: "/var/lib/netsonde-fsync-probe", parent: "/var/lib", name: "netsonde-fsync-probe", sameDevAs: "/var/lib/etcd"}
	if got != want {
		t.Errorf("plain directory: %+v, want %+v", got, want)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/netsonde-fsync-probe")); !os.IsNotExist(err) {
		t.Errorf("placing the probe made its directory (%v): directories are made by a round", err)
	}
}

// Files of agents that are gone go; a live agent's stay, and so does the
// directory while they are in it.
func TestRemoveStaleAndShare(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	files := map[string]bool{ // name: kept
		fmt.Sprintf("probe-%d-3", dead):        false,
		"probe-12":                             false, // an older netsonde's
		fmt.Sprintf("probe-%d-1", os.Getpid()): true,
		"etcd-owned":                           true,
	}
	for n := range files {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	parent, err := os.Open(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	removeStale(parent, filepath.Base(dir), slog.New(slog.DiscardHandler))
	for n, kept := range files {
		if _, err := os.Stat(filepath.Join(dir, n)); (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", n, err == nil, kept)
		}
	}

	// Two agents in one directory: the first out leaves the other's file
	// and the directory; the last out removes the directory.
	base := t.TempDir()
	shared := filepath.Join(base, "probe")
	a, b := &pathState{target: target{root: "/", label: "a", parent: base, name: "probe"}}, &pathState{target: target{root: "/", label: "b", parent: base, name: "probe"}}
	buf := make([]byte, blockSize)
	p := &prober{}
	if err := p.newFile(a, buf); err != nil {
		t.Fatal(err)
	}
	b.seq = 1 // a distinct file, as another pid would have
	if err := p.newFile(b, buf); err != nil {
		t.Fatal(err)
	}
	if err := a.release(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(shared, b.fileName)); err != nil {
		t.Errorf("the other agent's file went: %v", err)
	}
	if err := b.release(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(shared); !os.IsNotExist(err) {
		t.Errorf("directory left after the last agent (%v)", err)
	}
}

// Symlinks resolve as the node resolves them: an absolute target from the
// node's root (never the agent's), a relative one from its directory, ".."
// no higher than the root, and a loop ends in ELOOP. The opens that follow
// take no symlink, with openat2 or, before Linux 5.6, one openat per
// component.
func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"mnt/etcd-disk/member", "var/lib", "srv"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"var/lib/etcd": "/mnt/etcd-disk",          // absolute: the node's /mnt
		"var/lib/up":   "../../../../../srv",      // above the root: clamped
		"srv/member":   "../mnt/etcd-disk/member", // relative
		"var/lib/loop": "/var/lib/loop",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for p, want := range map[string]string{
		"/var/lib/etcd":              "/mnt/etcd-disk",
		"/var/lib/etcd/member":       "/mnt/etcd-disk/member",
		"/var/lib/etcd/../etcd-disk": "/mnt/etcd-disk", // .. of where the link led, as the kernel
		"var/lib/up/member/":         "/mnt/etcd-disk/member",
		"/../../var/lib/etcd/.":      "/mnt/etcd-disk",
	} {
		got, err := resolveInRoot(root, p)
		if err != nil || got != want {
			t.Errorf("resolveInRoot(%s) = %q, %v; want %q", p, got, err, want)
		}
	}
	if _, err := resolveInRoot(root, "/var/lib/loop"); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("a symlink loop: %v, want ELOOP", err)
	}
	if _, err := resolveInRoot(root, "/var/lib/nothing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing directory: %v, want ENOENT", err)
	}

	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/mnt/etcd-disk/member", true},
		{"/var/lib/etcd", false},        // a symlink: resolved already, or swapped in since
		{"/var/lib/etcd/member", false}, // through one
	} {
		f, err := openInRoot(root, tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("openInRoot(%s): %v, want ok %v", tc.path, err, tc.ok)
		}
		if err == nil {
			f.Close()
		}
		fd, err := walkNoFollow(rfd, tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("walkNoFollow(%s): %v, want ok %v", tc.path, err, tc.ok)
		}
		if err == nil {
			unix.Close(fd)
		} else if !tc.ok && reasonOf(err) != "not_a_directory" {
			t.Errorf("walkNoFollow(%s): reason %q, want not_a_directory", tc.path, reasonOf(err))
		}
	}
}
