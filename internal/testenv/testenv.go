// Package testenv is the shared kit of netsonde's privileged end-to-end
// tests: root checks that fail instead of skipping under CI, network
// namespaces that clean themselves up, global settings restored on exit,
// and a real netsonde binary started inside a namespace and scraped.
package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where a test that
// needs privileges must run and never skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireRoot skips a privileged test when not root, except under CI,
// where it fails: a skipped privileged test there is a hole in CI. Root
// with NETSONDE_UNPRIVILEGED=1 (make check) skips them too, so the quick
// suite is as quick for root as for anyone.
func RequireRoot(t testing.TB) {
	t.Helper()
	unprivileged := os.Getenv("NETSONDE_UNPRIVILEGED") == "1"
	if os.Geteuid() == 0 && (!unprivileged || InCI()) {
		return
	}
	if InCI() {
		t.Fatal("privileged test needs root, and CI=true forbids skipping")
	}
	t.Skip("privileged test: run as root without NETSONDE_UNPRIVILEGED (make test does)")
}

// RequireCommand fails (CI) or skips (elsewhere) when a tool is missing.
// make test installs every tool the tests use, so under CI a missing tool
// is a broken install step.
func RequireCommand(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if InCI() {
				t.Fatalf("%s is not installed (hack/install-deps.sh should have installed it)", n)
			}
			t.Skipf("%s is not installed; run hack/install-deps.sh", n)
		}
	}
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RandomName returns prefix plus 8 random hex digits: test objects (netns,
// links) must not collide with a parallel test or a leftover.
func RandomName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// DiskDir is a fresh directory on the root (ext4) filesystem, removed
// after the test: /tmp may be a tmpfs, where fdatasync costs nothing and
// ext4's tracepoints never fire.
func DiskDir(t testing.TB) string {
	d, err := os.MkdirTemp("/var/tmp", "netsonde-fsync-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// AgentBinary builds cmd/netsonde once per test binary and returns its path.
// $NETSONDE_AGENT_BIN, when set, is a prebuilt agent used as it is (the
// kernel matrix's guest has no Go toolchain).
func AgentBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv("NETSONDE_AGENT_BIN"); bin != "" {
			buildPath = bin
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		// One binary per test process, in one shared folder; binaries of
		// test processes that have exited are removed here, so test runs
		// leave at most the binaries of the ones still running.
		// Per user: a folder root made is not writable by anyone else.
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("netsonde-test-bin-%d", os.Getuid()))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			buildErr = err
			return
		}
		removeStale(dir)
		buildPath = filepath.Join(dir, fmt.Sprintf("netsonde-%d", os.Getpid()))
		// No VCS stamp: a checkout owned by another user (CI, a container)
		// must build too, and the version comes from ldflags anyway.
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", buildPath, "./cmd/netsonde")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// removeStale deletes netsonde-PID binaries whose test process is gone.
func removeStale(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "netsonde-%d", &pid); err != nil {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the netsonde module")
	}
	return filepath.Dir(gomod), nil
}

// SetSysctl sets a sysctl (dotted name, e.g. net.netfilter.nf_conntrack_max)
// in the test's own namespace and restores the old value when the test
// ends, pass or fail. Writes to a global setting are serialised across
// test processes with a lock file, so two packages never interleave their
// change-and-restore of the same key.
func SetSysctl(t testing.TB, key, value string) {
	t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	unlock := Lock(t, "sysctl-"+key)
	old, err := os.ReadFile(path)
	if err != nil {
		unlock()
		t.Fatalf("read %s: %v", key, err)
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		unlock()
		t.Fatalf("set %s=%s: %v", key, value, err)
	}
	t.Cleanup(func() {
		defer unlock()
		if err := os.WriteFile(path, bytes.TrimSpace(old), 0o644); err != nil {
			t.Errorf("restore %s=%s: %v", key, bytes.TrimSpace(old), err)
		}
	})
}

// Lock takes a machine-wide lock by name (flock on a file in /run) and
// returns its release. Use it around anything global that tests in other
// packages may change at the same time.
func Lock(t testing.TB, name string) func() {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "netsonde-test-"+name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("lock %s: %v", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", name, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
		})
	}
}
