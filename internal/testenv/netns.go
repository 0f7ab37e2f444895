package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netns is a network namespace made by a test (`ip netns add`), deleted
// with everything in it when the test ends.
type Netns struct {
	Name string
}

// NewNetns creates a namespace with loopback up.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "ip")
	n := &Netns{Name: RandomName("nsd-")}
	Run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", n.Name, err, out)
		}
	})
	n.Exec(t, "ip", "link", "set", "lo", "up")
	return n
}

// Exec runs a command inside the namespace and fails the test if it fails.
func (n *Netns) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Command returns an unstarted command that runs inside the namespace.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread switched into the namespace. Sockets made in
// fn stay in the namespace after it returns.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if switching back fails, so Go
		// retires it instead of reusing it in the wrong namespace.
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(n.Name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// IfIndex returns the index of the interface name in the namespace.
func (n *Netns) IfIndex(t testing.TB, name string) int {
	t.Helper()
	var idx int
	if err := n.Do(func() error {
		i, err := net.InterfaceByName(name)
		if err == nil {
			idx = i.Index
		}
		return err
	}); err != nil {
		t.Fatalf("index of %s in %s: %v", name, n.Name, err)
	}
	return idx
}

// HTTPClient returns a client whose connections are made inside the
// namespace, so a test in the host namespace can reach 127.0.0.1 there.
func (n *Netns) HTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := n.Do(func() error {
				var err error
				d := net.Dialer{Timeout: 5 * time.Second}
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Inode returns the namespace's inode number, as the kernel's net->ns.inum.
func (n *Netns) Inode(t testing.TB) uint64 {
	t.Helper()
	out := Run(t, "stat", "-L", "-c", "%i", "/run/netns/"+n.Name)
	var ino uint64
	if _, err := fmt.Sscan(strings.TrimSpace(out), &ino); err != nil {
		t.Fatalf("inode of netns %s: %v", n.Name, err)
	}
	return ino
}

// Cookie returns the namespace's cookie (SO_NETNS_COOKIE of a socket made
// inside it): what the agent's BPF programs key it by, never given to
// another namespace, unlike its inode.
func (n *Netns) Cookie(t testing.TB) uint64 {
	t.Helper()
	var c uint64
	if err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		c, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		return err
	}); err != nil {
		t.Fatalf("cookie of netns %s: %v", n.Name, err)
	}
	return c
}
