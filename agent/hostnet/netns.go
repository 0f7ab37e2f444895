package hostnet

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/hostview"
	"github.com/netsonde/netsonde/internal/procnet"
)

// PinDirs are where runtimes pin network namespaces: ip netns, containerd
// and CRI-O under /run/netns, older setups under /var/run/netns.
var PinDirs = []string{"/run/netns", "/var/run/netns"}

// Inode returns the inode of a namespace file (e.g. /proc/PID/ns/net):
// how the walk finds namespaces (net->ns.inum in the kernel). Not what
// counts are keyed by: see Cookie.
func Inode(path string) (uint64, error) { return hostview.Inode(path) }

// OwnInode is the inode of the calling thread's network namespace.
func OwnInode() (uint64, error) { return hostview.OwnInode() }

// OwnCookie is the cookie of the calling thread's network namespace.
func OwnCookie() (uint64, error) { return hostview.OwnCookie() }

// Cookie returns the cookie of the namespace at path: the number BPF
// programs see as net->net_cookie and key their counts by. Unlike the
// inode, which a new namespace gets back as soon as the last one holding
// it is freed, a cookie is never given to another namespace while the
// node runs, so counts keyed by it never pass from a vanished pod to a
// new one. Only a socket made inside the namespace tells it
// (SO_NETNS_COOKIE, Linux 5.14+): a locked thread enters the namespace for
// the read and comes back.
func Cookie(path string) (uint64, error) {
	var c uint64
	err := inside(path, func() error {
		var err error
		c, err = hostview.OwnCookie()
		return err
	})
	return c, err
}

// inside runs fn on a thread of its own switched into the namespace at
// path, and brings the thread back. A thread that cannot come back is
// never unlocked, so it ends with its goroutine instead of running other
// code in a pod's namespace. The namespace file is held open only for the
// call: no namespace is kept alive by netsonde.
func inside(path string, fn func() error) error {
	ns, err := os.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		done <- ferr
	}()
	return <-done
}

// List finds the node's network namespaces by inode, each with a path that
// opens it: those pinned under pinDirs first, then those only held by
// processes (procPath/PID/ns/net; procPath "" skips that walk, which is
// O(processes)). It is the one walk of /proc for namespaces in netsonde.
func List(procPath string, pinDirs []string) map[uint64]string {
	out := map[uint64]string{}
	for _, dir := range pinDirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if ino, err := Inode(p); err == nil {
				out[ino] = p
			}
		}
	}
	if procPath == "" {
		return out
	}
	procs, _ := os.ReadDir(procPath)
	for _, e := range procs {
		if n := e.Name(); n[0] < '0' || n[0] > '9' {
			continue
		}
		p := filepath.Join(procPath, e.Name(), "ns", "net")
		if ino, err := Inode(p); err == nil {
			if _, seen := out[ino]; !seen {
				out[ino] = p
			}
		}
	}
	return out
}

// Source is every access to the kernel the view makes outside the link
// subscription: the namespace walk and the per-namespace dumps. It is an
// interface so a test can count the calls (none on the scrape path).
type Source interface {
	// Namespaces is List.
	Namespaces() map[uint64]string
	// Inspect dumps the links and addresses of the namespace at path.
	Inspect(path string) (Inspection, error)
}

// KernelSource is the Source of the running kernel.
type KernelSource struct {
	ProcPath string
	PinDirs  []string
}

// Namespaces implements Source.
func (k KernelSource) Namespaces() map[uint64]string { return List(k.ProcPath, k.PinDirs) }

// Inspect implements Source.
func (k KernelSource) Inspect(path string) (Inspection, error) {
	out := Inspection{NsID: -1}
	c, err := Cookie(path)
	if err != nil {
		return out, err
	}
	out.Cookie = c
	f, err := os.Open(path)
	if err != nil {
		return out, err
	}
	if id, err := netlink.GetNetNsIdByFd(int(f.Fd())); err == nil {
		out.NsID = id
	}
	f.Close()
	h, err := netns.GetFromPath(path)
	if err != nil {
		return out, fmt.Errorf("open %s: %w", path, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE) // route only: NETLINK_XFRM needs xfrm_user, often a module not loaded
	if err != nil {
		return out, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		return out, fmt.Errorf("list links in %s: %w", path, err)
	}
	out.Links = make(map[int]NsLink, len(links))
	for _, l := range links {
		a := l.Attrs()
		nl := NsLink{Name: a.Name, MTU: a.MTU, Kind: l.Type()}
		if _, ok := l.(*netlink.Veth); ok {
			nl.PeerIndex = a.ParentIndex
		}
		out.Links[a.Index] = nl
	}
	addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return out, fmt.Errorf("list addresses in %s: %w", path, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLoopback() {
			out.Addrs = append(out.Addrs, ip.Unmap())
		}
	}
	slices.SortFunc(out.Addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	return out, nil
}

// CounterSource is a Source that also reads a namespace's socket and
// protocol counters (its own /proc/net/netstat, snmp and snmp6), for the
// view to keep beside its links when a collector wants them.
type CounterSource interface {
	Counters(path string, want procnet.Want) (procnet.Counters, error)
}

// Counters implements CounterSource.
func (k KernelSource) Counters(path string, want procnet.Want) (procnet.Counters, error) {
	return ReadCounters(path, want)
}

// ReadCounters reads the counters of the namespace at path from inside
// it: a thread of its own enters the namespace (inside), reads
// /proc/thread-self/net/{netstat,snmp,snmp6} (procfs shows the reading
// thread's namespace; a pinned namespace has no process to read through)
// and comes back.
func ReadCounters(path string, want procnet.Want) (procnet.Counters, error) {
	files := make(map[string][]byte, len(procnet.Files))
	err := inside(path, func() error {
		for _, name := range procnet.Files {
			b, err := os.ReadFile("/proc/thread-self/net/" + name)
			if errors.Is(err, fs.ErrNotExist) { // snmp6 without IPv6
				continue
			}
			if err != nil {
				return fmt.Errorf("read net/%s in %s: %w", name, path, err)
			}
			files[name] = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c, err := procnet.ParseWanted(files, want)
	if err != nil {
		return nil, fmt.Errorf("counters of %s: %w", path, err)
	}
	return c, nil
}
