package loader

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
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

// filterPrefix starts the name of every filter netsonde adds; the owner's
// instance id follows, so a restarted agent can tell a dead predecessor's
// filters from a live neighbour's.
const filterPrefix = "netsonde:"

// Owner identifies this agent's legacy tc filters. Filters outlive the
// process that added them (a kill -9 leaves them in the kernel, counting
// into maps nobody reads), so each carries the owner's instance id in its
// name, and the owner holds an abstract unix socket named after that id in
// the network namespace of the interfaces. The socket goes when the process
// dies, whatever killed it: a filter whose owner's socket does not answer
// is stale. Abstract sockets belong to the network namespace, not to a PID
// namespace, so this works across containers sharing the host network.
type Owner struct {
	ID       string
	handle   uint32
	listener net.Listener
}

// NewOwner creates this agent's owner identity and its liveness socket.
func NewOwner() (*Owner, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("owner id: %w", err)
	}
	id := hex.EncodeToString(b)
	l, err := net.Listen("unix", "@"+ownerSocket(id))
	if err != nil {
		return nil, fmt.Errorf("owner socket: %w", err)
	}
	// Handles 1..0xfffe; two agents colliding on one is a 1/65534 chance,
	// and the second agent's add then fails visibly (EEXIST), it does not
	// replace the first's filter.
	h := binary.BigEndian.Uint32(b)%0xfffe + 1
	return &Owner{ID: id, handle: h, listener: l}, nil
}

func ownerSocket(id string) string { return "netsonde-owner-" + id }

// Close releases the liveness socket.
func (o *Owner) Close() error { return o.listener.Close() }

// alive says whether the agent with instance id still runs.
func alive(id string) bool {
	c, err := net.Dial("unix", "@"+ownerSocket(id))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ownerOf returns the instance id in a filter name of ours, or "".
func ownerOf(name string) string {
	rest, ok := strings.CutPrefix(name, filterPrefix)
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return ""
	}
	return rest[i+1:]
}

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
// filters: the way before TCX. It creates the clsact qdisc only where none
// exists, and removes on Close only what it created.
type TC struct {
	owner *Owner
	// what names the filters ("fragments"), after the prefix.
	what string

	mu      sync.Mutex
	created map[int]bool // clsact qdiscs this agent created, by ifindex
}

// NewTC prepares legacy tc attachment for owner's filters named what.
func NewTC(owner *Owner, what string) *TC {
	return &TC{owner: owner, what: what, created: map[int]bool{}}
}

func (t *TC) filterName() string { return filterPrefix + t.what + ":" + t.owner.ID }

func linkOf(ifindex int) netlink.Link {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: ifindex}}
}

// Attach removes stale filters a dead predecessor left on the interface,
// then adds ours on ingress and egress.
func (t *TC) Attach(ifindex int, p Pair) (io.Closer, error) {
	ingress, egress := p.Ingress, p.Egress
	removed, err := t.RemoveStale(ifindex)
	if err != nil {
		return nil, err
	}
	if err := t.ensureClsact(ifindex, removed > 0); err != nil {
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
			for _, a := range added {
				netlink.FilterDel(a)
			}
			return nil, fmt.Errorf("tc filter add: %w", err)
		}
		added = append(added, filter)
	}
	return &tcLink{tc: t, ifindex: ifindex, filters: added}, nil
}

// ensureClsact adds a clsact qdisc where none is. adopt says a dead
// predecessor's filters were just removed from the interface: if nothing
// else is on its clsact, the predecessor made it, and this agent takes it
// over, to remove it when it stops.
func (t *TC) ensureClsact(ifindex int, adopt bool) error {
	// An exclusive add both creates the qdisc and tells whether one was
	// there. Listing qdiscs first cost a dump of every qdisc in the
	// namespace per interface (the kernel does not filter a qdisc dump by
	// interface): quadratic, 370 MB allocated and a 3 s start with 1,000
	// veths.
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	switch err := netlink.QdiscAdd(q); {
	case err == nil:
	case errors.Is(err, unix.EEXIST):
		if !adopt || !(&tcLink{ifindex: ifindex}).empty() {
			return nil
		}
	default:
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	t.mu.Lock()
	t.created[ifindex] = true
	t.mu.Unlock()
	return nil
}

// Filters lists netsonde's filters on an interface (both directions).
func Filters(ifindex int) ([]*netlink.BpfFilter, error) {
	var out []*netlink.BpfFilter
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := netlink.FilterList(linkOf(ifindex), parent)
		if err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				continue // no clsact qdisc: no filters
			}
			return nil, fmt.Errorf("list filters: %w", err)
		}
		for _, f := range fs {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, filterPrefix) {
				out = append(out, bf)
			}
		}
	}
	return out, nil
}

// RemoveStale deletes netsonde filters on the interface whose owner is no
// longer alive, and returns how many it removed.
func (t *TC) RemoveStale(ifindex int) (int, error) {
	fs, err := Filters(ifindex)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range fs {
		id := ownerOf(f.Name)
		if id == "" || id == t.owner.ID || alive(id) {
			continue
		}
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return n, fmt.Errorf("remove stale filter %s: %w", f.Name, err)
		}
		n++
	}
	return n, nil
}

type tcLink struct {
	tc      *TC
	ifindex int
	filters []*netlink.BpfFilter
}

// Close removes exactly our filters, and the clsact qdisc if we created it
// and nobody else's filters are on it now.
func (l *tcLink) Close() error {
	var errs []error
	for _, f := range l.filters {
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("remove filter: %w", err))
		}
	}
	l.tc.mu.Lock()
	created := l.tc.created[l.ifindex]
	delete(l.tc.created, l.ifindex)
	l.tc.mu.Unlock()
	if created && l.empty() {
		q := &netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
			QdiscType:  "clsact",
		}
		if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("remove clsact qdisc: %w", err))
		}
	}
	return errors.Join(errs...)
}

// empty says whether the interface's clsact has no filters at all.
func (l *tcLink) empty() bool {
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := netlink.FilterList(linkOf(l.ifindex), parent)
		if err != nil || len(fs) > 0 {
			return false
		}
	}
	return true
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
// once.
const inFlight = 64

// Overlap runs jobs that attach programs to interfaces or detach them, up
// to 64 at a time, and returns when all are done. Each waits on the kernel
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
		})
	}
	for _, job := range jobs {
		next <- job
	}
	close(next)
	wg.Wait()
}
