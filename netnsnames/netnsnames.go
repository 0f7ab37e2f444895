// Package netnsnames names interfaces in any network namespace on the node.
// BPF programs see an interface as (netns inode, ifindex); the same ifindex
// exists in every namespace, so a name needs both. The agent's own
// namespace is answered from its live link view; others are found by inode
// among the namespaces pinned under /run/netns (ip netns, containerd,
// CRI-O) and those held by processes (/proc/PID/ns/net), then read with one
// netlink dump, cached.
package netnsnames

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/linkwatch"
)

// Options for a Resolver.
type Options struct {
	// Links is the agent's own namespace's live view (may be nil).
	Links *linkwatch.Watcher
	// ProcPath is procfs (default /proc); PinDirs are where runtimes pin
	// namespaces (default /run/netns and /var/run/netns).
	ProcPath string
	PinDirs  []string
	// TTL is how long a foreign namespace's names are reused (default 30 s).
	TTL time.Duration
	// ScanInterval bounds how often /proc is walked to find namespaces
	// held only by processes: a walk is O(processes) (default 10 s).
	ScanInterval time.Duration
}

// Resolver names interfaces. It is safe for concurrent use.
type Resolver struct {
	opts Options
	own  uint64

	mu       sync.Mutex
	cache    map[uint64]*entry
	paths    map[uint64]string // netns inode -> a path that opens it
	lastScan time.Time
}

type entry struct {
	names   map[int]string
	fetched time.Time
	// missingSince is when the namespace was first not found (zero while
	// it is found), so callers can forget counters of vanished namespaces.
	missingSince time.Time
}

// New makes a resolver; the calling thread's namespace is "own".
func New(opts Options) (*Resolver, error) {
	if opts.ProcPath == "" {
		opts.ProcPath = "/proc"
	}
	if opts.PinDirs == nil {
		opts.PinDirs = []string{"/run/netns", "/var/run/netns"}
	}
	if opts.TTL == 0 {
		opts.TTL = 30 * time.Second
	}
	if opts.ScanInterval == 0 {
		opts.ScanInterval = 10 * time.Second
	}
	own, err := Inode("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	return &Resolver{opts: opts, own: own, cache: map[uint64]*entry{}, paths: map[uint64]string{}}, nil
}

// Inode returns the inode of a namespace file (e.g. /proc/PID/ns/net).
func Inode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

// Own is the inode of the agent's network namespace.
func (r *Resolver) Own() uint64 { return r.own }

// Lookup result.
type Result struct {
	Name string
	// Found is false when the namespace could not be found (it may be
	// gone) or the interface is not in it.
	Found bool
	// GoneFor is how long the namespace has been missing (0 if present).
	GoneFor time.Duration
}

// Name names ifindex in namespace inode.
func (r *Resolver) Name(inode uint64, ifindex int) Result {
	if ifindex == 0 {
		return Result{}
	}
	if inode == r.own && r.opts.Links != nil {
		l, ok := r.opts.Links.ByIndex(ifindex)
		return Result{Name: l.Name, Found: ok}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	e := r.cache[inode]
	if e == nil || now.Sub(e.fetched) > r.opts.TTL {
		e = r.fetch(inode, now, e)
		r.cache[inode] = e
	}
	if !e.missingSince.IsZero() {
		return Result{GoneFor: now.Sub(e.missingSince)}
	}
	name, ok := e.names[ifindex]
	return Result{Name: name, Found: ok}
}

// Forget drops cached state of namespaces not in keep.
func (r *Resolver) Forget(keep map[uint64]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ino := range r.cache {
		if !keep[ino] {
			delete(r.cache, ino)
		}
	}
}

func (r *Resolver) fetch(inode uint64, now time.Time, old *entry) *entry {
	names, err := r.read(inode, now)
	if err != nil {
		e := &entry{fetched: now, missingSince: now}
		if old != nil && !old.missingSince.IsZero() {
			e.missingSince = old.missingSince
		}
		return e
	}
	return &entry{names: names, fetched: now}
}

func (r *Resolver) read(inode uint64, now time.Time) (map[int]string, error) {
	path, ok := r.paths[inode]
	if ok {
		if ino, err := Inode(path); err != nil || ino != inode {
			delete(r.paths, inode)
			ok = false
		}
	}
	if !ok {
		r.scan(now)
		if path, ok = r.paths[inode]; !ok {
			return nil, fmt.Errorf("network namespace %d not found", inode)
		}
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE) // route only: NETLINK_XFRM needs xfrm_user, often a module not loaded
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links in %s: %w", path, err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	return names, nil
}

// scan refreshes the inode -> path table: pinned namespaces always (a
// directory read), processes' namespaces at most every ScanInterval.
func (r *Resolver) scan(now time.Time) {
	procPath := r.opts.ProcPath
	if now.Sub(r.lastScan) < r.opts.ScanInterval {
		procPath = "" // pinned ones only this time
	} else {
		r.lastScan = now
	}
	// Namespaces found by an earlier walk of /proc stay known; a path
	// found now (pinned ones first) replaces any older one.
	for ino, p := range List(procPath, r.opts.PinDirs) {
		r.paths[ino] = p
	}
}

// List finds the node's network namespaces by inode, each with a path that
// opens it: those pinned under pinDirs (ip netns, containerd, CRI-O) first,
// then those only held by processes (procPath/PID/ns/net; procPath "" skips
// the walk, which is O(processes)).
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
