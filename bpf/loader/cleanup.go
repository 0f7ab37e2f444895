package loader

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Cleaned is one thing Cleanup found of netsonde's on an interface: a
// filter it removed or kept, or a clsact qdisc it removed.
type Cleaned struct {
	Interface string
	// Qdisc: the interface's clsact qdisc, else a filter.
	Qdisc bool
	// Filter and Direction (ingress, egress): the filter's.
	Filter, Direction string
	// Kept: a filter whose owner runs, left in place.
	Kept bool
}

func (c Cleaned) String() string {
	switch {
	case c.Qdisc:
		return fmt.Sprintf("removed clsact qdisc from %s (no filter left on it)", c.Interface)
	case c.Kept:
		pid, _, _ := parseOwnerID(ownerOf(c.Filter))
		return fmt.Sprintf("kept filter %s on %s %s (its agent, pid %d, runs)", c.Filter, c.Interface, c.Direction, pid)
	}
	if pid, _, ok := parseOwnerID(ownerOf(c.Filter)); ok {
		return fmt.Sprintf("removed filter %s from %s %s (its agent, pid %d, is gone)", c.Filter, c.Interface, c.Direction, pid)
	}
	return fmt.Sprintf("removed filter %s from %s %s (named by netsonde 0.1.0, whose owner cannot be proven alive)", c.Filter, c.Interface, c.Direction)
}

// Cleanup removes, from every interface of the calling thread's network
// namespace, the legacy tc filters of netsonde agents that no longer run,
// and the clsact qdiscs they leave without any filter: a clsact on which
// netsonde's filters were the only ones is taken as netsonde's. A clsact
// that held no netsonde filter is left alone, even empty (an agent leaves
// its own so, see tcLink.Close). Filters of a running agent are kept
// and reported. Nothing else of netsonde's outlives its process: TCX
// links and every other BPF link go with it, and netsonde pins no BPF
// object. So Cleanup is what an uninstall after a kill -9 (an OOM kill)
// needs when no next agent comes to remove the filters; a second run finds
// nothing.
func Cleanup() ([]Cleaned, error) {
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	done := make([][]Cleaned, len(links))
	errs := make([]error, len(links))
	jobs := make([]func(), len(links))
	for i, l := range links {
		jobs[i] = func() { done[i], errs[i] = cleanup(l.Attrs().Index, l.Attrs().Name) }
	}
	Overlap(jobs)
	return slices.Concat(done...), errors.Join(errs...)
}

// cleanup is Cleanup on one interface.
func cleanup(ifindex int, name string) ([]Cleaned, error) {
	fs, _, err := filters(ifindex)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var out []Cleaned
	kept := 0
	for _, f := range fs {
		c := Cleaned{Interface: name, Filter: f.Name, Direction: "ingress"}
		if f.Parent == netlink.HANDLE_MIN_EGRESS {
			c.Direction = "egress"
		}
		if alive(ownerOf(f.Name)) {
			c.Kept = true
			kept++
			out = append(out, c)
			continue
		}
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return out, fmt.Errorf("%s: remove filter %s: %w", name, f.Name, err)
		}
		out = append(out, c)
	}
	// Another tool's filter, a running agent's, or one added meanwhile
	// keeps the qdisc.
	if len(fs) > kept && empty(ifindex) {
		if err := netlink.QdiscDel(clsact(ifindex)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return out, fmt.Errorf("%s: remove clsact qdisc: %w", name, err)
		}
		out = append(out, Cleaned{Interface: name, Qdisc: true})
	}
	return out, nil
}
