package fsync

import (
	"os"
	"path/filepath"
	"testing"

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
	want := target{label: "/var/lib/netsonde-fsync-probe", dir: filepath.Join(root, "var/lib/netsonde-fsync-probe"), sameDevAs: filepath.Join(root, "var/lib/etcd")}
	if got != want {
		t.Errorf("plain directory: %+v, want %+v", got, want)
	}
	if _, err := os.Stat(want.dir); !os.IsNotExist(err) {
		t.Errorf("placing the probe made %s (%v): directories are made by a round", want.dir, err)
	}
}
