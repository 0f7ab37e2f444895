package loader

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tcPriority is the priority of every cls_bpf filter netsonde adds: its own
// value, so that `tc filter show` tells them apart from other tools'.
// Filters of two agents (a rolling update) share it and differ by handle.
const tcPriority = 0x4e53 // "NS"

// Pair is the programs for an interface's two directions.
type Pair struct {
	Ingress, Egress *ebpf.Program
}

// TCXLink is an interface's ingress and egress TCX links.
type TCXLink struct {
	ingress, egress link.Link
}

// AttachTCX attaches ingress and egress by TCX (6.6+), after the programs
// already there. The links go with the process, so a crash leaves nothing
// behind.
func AttachTCX(ifindex int, p Pair) (*TCXLink, error) { return attachTCX(ifindex, p, nil) }

// AttachTCXFirst is AttachTCX ahead of every program already there: a
// program that only counts must see a packet before another one (a
// dataplane's, a policy's) redirects or drops it.
func AttachTCXFirst(ifindex int, p Pair) (*TCXLink, error) { return attachTCX(ifindex, p, link.Head()) }

func attachTCX(ifindex int, p Pair, anchor link.Anchor) (*TCXLink, error) {
	ingress, egress := p.Ingress, p.Egress
	li, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: ingress, Attach: ebpf.AttachTCXIngress, Anchor: anchor})
	if err != nil {
		return nil, fmt.Errorf("tcx ingress: %w", err)
	}
	lo, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: egress, Attach: ebpf.AttachTCXEgress, Anchor: anchor})
	if err != nil {
		li.Close()
		return nil, fmt.Errorf("tcx egress: %w", err)
	}
	return &TCXLink{ingress: li, egress: lo}, nil
}

// Update replaces both programs in place: each packet runs the old or the
// new program, never neither.
func (l *TCXLink) Update(p Pair) error {
	ingress, egress := p.Ingress, p.Egress
	if err := l.ingress.Update(ingress); err != nil {
		return fmt.Errorf("tcx ingress update: %w", err)
	}
	if err := l.egress.Update(egress); err != nil {
		return fmt.Errorf("tcx egress update: %w", err)
	}
	return nil
}

// Close detaches both programs.
func (l *TCXLink) Close() error {
	return errors.Join(l.ingress.Close(), l.egress.Close())
}

// TC attaches programs through a clsact qdisc and direct-action cls_bpf
// filters: the way before TCX. It adds the clsact qdisc where none
// exists, and never deletes one (tcLink.Close says why).
type TC struct {
	owner owner
	// what names the filters ("fragments"), after the prefix.
	what string
}

// NewTC prepares legacy tc attachment for this process's filters named
// what ("fragments", "dns").
func NewTC(what string) (*TC, error) {
	o, err := newOwner()
	if err != nil {
		return nil, err
	}
	return &TC{owner: o, what: what}, nil
}

func (t *TC) filterName() string { return filterPrefix + t.what + ":" + t.owner.id }

func linkOf(ifindex int) netlink.Link {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}
}

// Attach removes stale filters a dead predecessor left on the interface,
// then adds ours on ingress and egress.
func (t *TC) Attach(ifindex int, p Pair) (io.Closer, error) {
	ingress, egress := p.Ingress, p.Egress
	if err := t.removeStale(ifindex); err != nil {
		return nil, err
	}
	if err := ensureClsact(ifindex); err != nil {
		return nil, err
	}
	var added []*netlink.BpfFilter
	for _, f := range []struct {
		parent uint32
		prog   *ebpf.Program
	}{{netlink.HANDLE_MIN_INGRESS, ingress}, {netlink.HANDLE_MIN_EGRESS, egress}} {
		filter := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex,
				Parent:    f.parent,
				Handle:    t.owner.handle,
				Protocol:  unix.ETH_P_ALL,
				Priority:  tcPriority,
			},
			Fd:           f.prog.FD(),
			Name:         t.filterName(),
			DirectAction: true,
		}
		if err := netlink.FilterAdd(filter); err != nil {
			// A filter left behind here would count on an interface
			// nobody reads: say so with the error, not silently.
			errs := []error{fmt.Errorf("tc filter add: %w", err)}
			for _, a := range added {
				if derr := netlink.FilterDel(a); derr != nil {
					errs = append(errs, fmt.Errorf("tc filter del (rollback): %w", derr))
				}
			}
			return nil, errors.Join(errs...)
		}
		added = append(added, filter)
	}
	return &tcLink{filters: added}, nil
}

// ensureClsact adds a clsact qdisc where none is, at most once per
// interface in its life: netsonde never deletes one (tcLink.Close).
func ensureClsact(ifindex int) error {
	// An exclusive add both creates the qdisc and tells whether one was
	// there. Listing qdiscs first cost a dump of every qdisc in the
	// namespace per interface (the kernel does not filter a qdisc dump by
	// interface): quadratic, 370 MB allocated and a 3 s start with 1,000
	// veths.
	if err := netlink.QdiscAdd(clsact(ifindex)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	return nil
}

func clsact(ifindex int) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
}

// Filters lists netsonde's filters on an interface (both directions).
func Filters(ifindex int) ([]*netlink.BpfFilter, error) {
	ours, _, err := filters(ifindex)
	return ours, err
}

// filters lists netsonde's filters on an interface (both directions), and
// counts the others.
func filters(ifindex int) (ours []*netlink.BpfFilter, others int, err error) {
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := netlink.FilterList(linkOf(ifindex), parent)
		if err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				continue // no clsact qdisc: no filters
			}
			return nil, 0, fmt.Errorf("list filters: %w", err)
		}
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, filterPrefix) {
				ours = append(ours, bf)
			} else {
				others++
			}
		}
	}
	return ours, others, nil
}

// removeStale deletes netsonde filters on the interface whose owner is no
// longer alive.
func (t *TC) removeStale(ifindex int) error {
	fs, _, err := filters(ifindex)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if id := ownerOf(f.Name); id == t.owner.id || alive(id) {
			continue
		}
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove stale filter %s: %w", f.Name, err)
		}
	}
	return nil
}

type tcLink struct {
	filters []*netlink.BpfFilter
}

// Close removes exactly our filters and leaves the clsact qdisc, ours or
// not. Adding or deleting a clsact on an interface that is up makes the
// kernel deactivate its transmit queues for an RCU grace period
// (qdisc_graft calls dev_deactivate): what the interface sends meanwhile
// is dropped, and with a dropped fragment the rest of its datagram (a
// loop of clsact add and delete on a veth lost 14 of a flood's packets
// per change). A delete at every stop and an add at every start would
// cost every interface of the node two such moments per rolling update,
// and the start-up handover to TCX one more. Left, the clsact is empty
// once no filter is on it, costs a packet one pointer check, and the next
// agent's start-up finds it there. It goes with its interface (a pod's
// veth with the pod); `netsonde cleanup` removes one it finds netsonde's
// filters alone on.
func (l *tcLink) Close() error {
	var errs []error
	for _, f := range l.filters {
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("remove filter: %w", err))
		}
	}
	return errors.Join(errs...)
}

// empty says whether the interface has no filter at all (or no clsact).
func empty(ifindex int) bool {
	ours, others, err := filters(ifindex)
	return err == nil && len(ours) == 0 && others == 0
}

// CloseAll closes every closer (interfaces' attachments), Overlap at a
// time: one after the other, 1,000 interfaces took 7 s to let go, past the
// kubelet's patience and the tests'.
func CloseAll(closers []io.Closer) error {
	errs := make([]error, len(closers))
	jobs := make([]func(), len(closers))
	for i, c := range closers {
		jobs[i] = func() { errs[i] = c.Close() }
	}
	Overlap(jobs)
	return errors.Join(errs...)
}

// inFlight bounds the interface attaches and detaches Overlap runs at
// once. 16, not 64: each job holds a thread of its own (locked, and ended
// with it), and dns and fragments attach at once at start, so 128 threads
// and their stacks were part of the start-up peak (VmHWM 34-38 MiB against
// 32-36 with 16, at 1,000 interfaces), while 16 attach as fast: by tc,
// 1,000 interfaces in 0.61-0.67 s either way (the RTNL lock serialises
// them in the kernel past a few).
const inFlight = 16

// Overlap runs jobs that attach programs to interfaces or detach them, up
// to inFlight at a time, and returns when all are done. Each waits on the kernel
// (netlink round trips, the RTNL lock) far more than it computes, and
// overlapping legacy tc attaches and most detaches is what makes 1,000
// interfaces take a second instead of tens. TCX attaches gain nothing:
// the kernel makes each wait for an RCU grace period under the RTNL lock.
func Overlap(jobs []func()) {
	next := make(chan func())
	var wg sync.WaitGroup
	for range min(inFlight, len(jobs)) {
		wg.Go(func() {
			for job := range next {
				job()
			}
			// Each worker blocks in the kernel on a thread of its
			// own, and the runtime keeps every thread it ever made:
			// two collectors attaching at once left about 128 idle
			// threads, each with 48 KiB of Go stacks (g0 and signal),
			// 6 MiB of the agent's RSS at 1,000 interfaces. A
			// goroutine that ends locked to its thread takes the
			// thread with it. Locked only at the end: a locked
			// goroutine is woken on its own thread only, slow on a
			// busy node, and the detaches must end within the
			// agent's 2 s shutdown.
			runtime.LockOSThread()
		})
	}
	for _, job := range jobs {
		next <- job
	}
	close(next)
	wg.Wait()
}
