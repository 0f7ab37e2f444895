package hostnet

// The Watcher keeps an in-memory view of the network interfaces of one
// network namespace, current from netlink link events. Scrapes read the view
// and never touch sysfs: node_exporter's per-file sysfs reads block on the
// RTNL lock for seconds on busy nodes.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Watcher keeps the view. Create it with New and run it with Start.
type Watcher struct {
	logger *slog.Logger
	opts   WatcherOptions
	// ns is the namespace being watched, held open so that a resubscribe
	// from any goroutine (any OS thread) watches the same one.
	ns     netns.NsHandle
	handle *netlink.Handle
	// handleMu keeps RouteTo, called from the view's goroutine, off the
	// handle once run has closed it (its fd number may be reused).
	handleMu sync.RWMutex
	closed   bool
	// routes answers RouteTo for a static watcher (tests).
	routes map[netip.Addr]int

	mu    sync.RWMutex
	links map[int]Link
	// sorted is Links' answer, shared by every caller until the view
	// changes: every scrape asks for it, interfaces change rarely, and
	// copying and sorting 1,000 links each time was a tenth of a scrape.
	sorted []Link
	subs   map[chan struct{}]struct{}
	// resyncs counts full re-reads after an event socket overflow or error.
	resyncs int
}

// WatcherOptions tune a Watcher; the zero value is right for production.
type WatcherOptions struct {
	// ReceiveBufferSize of the event socket, in bytes (default 4 MiB).
	// Thousands of veths appear at once on a busy node; a large buffer
	// makes overflow, and the full re-read it costs, rare.
	ReceiveBufferSize int
}

// New makes a watcher for the calling thread's network namespace.
func NewWatcher(logger *slog.Logger, opts WatcherOptions) (*Watcher, error) {
	if opts.ReceiveBufferSize == 0 {
		opts.ReceiveBufferSize = 4 << 20
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	return &Watcher{logger: logger, opts: opts, ns: ns, handle: h, links: map[int]Link{}, subs: map[chan struct{}]struct{}{}}, nil
}

// Start reads every link once and keeps the view current until ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	sub, err := w.subscribe(ctx)
	if err == nil {
		if err = w.resync(); err != nil {
			sub.stop()
		}
	}
	if err != nil {
		w.close()
		return err
	}
	go w.run(ctx, sub)
	return nil
}

// subscription is one link-event socket and the goroutine that reads it.
// It owns the socket: the socket is closed when the stream breaks, when
// stop is called, or when the watcher's context ends. netlink's
// LinkSubscribe closed its socket only on done, so each resubscribe after
// an overflow left the broken socket open and subscribed, the kernel
// queueing every later link event on it for nobody (3 overflows: 3 more
// sockets, 24 MiB queued); and it leaked the socket whose forced buffer
// size was refused.
type subscription struct {
	updates chan netlink.LinkUpdate
	// err is why the stream ended; read it only after updates is closed.
	err  error
	stop context.CancelFunc
}

func (w *Watcher) subscribe(ctx context.Context) (*subscription, error) {
	s, err := nl.SubscribeAt(w.ns, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	// Forcing lifts the net.core.rmem_max cap (212 KiB by default) but
	// needs CAP_NET_ADMIN; without it, take what rmem_max allows.
	if err := s.SetReceiveBufferSize(w.opts.ReceiveBufferSize, true); err != nil {
		if err := s.SetReceiveBufferSize(w.opts.ReceiveBufferSize, false); err != nil {
			s.Close()
			return nil, fmt.Errorf("link event socket buffer: %w", err)
		}
	}
	ctx, stop := context.WithCancel(ctx)
	sub := &subscription{updates: make(chan netlink.LinkUpdate, 1024), stop: stop}
	// Closing the socket wakes a Receive blocked on it (the socket is
	// non-blocking, read through Go's poller).
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	go sub.read(ctx, s)
	return sub, nil
}

// read delivers the socket's link messages until it fails (ENOBUFS when
// the kernel dropped events) or ctx ends, then closes the socket and
// updates.
func (sub *subscription) read(ctx context.Context, s *nl.NetlinkSocket) {
	defer close(sub.updates)
	defer sub.stop()
	for {
		msgs, from, err := s.Receive()
		if err != nil {
			sub.err = err
			return
		}
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWLINK && m.Header.Type != unix.RTM_DELLINK {
				continue
			}
			header := unix.NlMsghdr(m.Header)
			l, err := netlink.LinkDeserialize(&header, m.Data)
			if err != nil {
				continue // a kind the library cannot parse; the next resync has it
			}
			select {
			case sub.updates <- netlink.LinkUpdate{IfInfomsg: *nl.DeserializeIfInfomsg(m.Data), Header: header, Link: l}:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (w *Watcher) close() {
	w.handleMu.Lock()
	defer w.handleMu.Unlock()
	w.closed = true
	w.handle.Close()
	w.ns.Close()
}

// run applies events. The subscription is made before the full read, so an
// event that raced the read is applied after it: every change after
// subscribing arrives in order, and the view converges. When the event
// socket fails (ENOBUFS on overflow), it subscribes again and re-reads all.
func (w *Watcher) run(ctx context.Context, sub *subscription) {
	defer w.close()
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-sub.updates:
			if ok {
				w.apply(u)
				continue
			}
			if ctx.Err() != nil {
				return
			}
			w.logger.Warn("link event stream broke, resyncing", "err", sub.err)
			for {
				var err error
				sub, err = w.subscribe(ctx)
				if err == nil {
					if err = w.resync(); err != nil {
						sub.stop()
					}
				}
				if err == nil {
					break
				}
				w.logger.Error("link resync failed, retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}
}

func (w *Watcher) resync() error {
	all, err := w.handle.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list links: %w", err)
	}
	links := make(map[int]Link, len(all))
	for _, l := range all {
		v := fromNetlink(l)
		links[v.Index] = v
	}
	w.mu.Lock()
	w.links, w.sorted = links, nil
	w.resyncs++
	w.mu.Unlock()
	w.notify()
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		// The dump raced a change; the change's event follows and fixes it.
		w.logger.Debug("link dump interrupted; events will complete it")
	}
	return nil
}

func (w *Watcher) apply(u netlink.LinkUpdate) {
	v := fromNetlink(u.Link)
	w.mu.Lock()
	switch u.Header.Type {
	case unix.RTM_DELLINK:
		// A link moved to another namespace is also deleted here.
		delete(w.links, v.Index)
	default:
		w.links[v.Index] = v
	}
	w.sorted = nil
	w.mu.Unlock()
	w.notify()
}

func fromNetlink(l netlink.Link) Link {
	a := l.Attrs()
	// netlink's parser leaves the hardware addresses (and a vxlan's
	// addresses) as slices of the receive buffer, which holds many
	// links' messages: kept, they kept every buffer of the dump alive,
	// 3 MiB at 1,000 interfaces. Copies free them; the counters nobody
	// reads go.
	a.HardwareAddr = slices.Clone(a.HardwareAddr)
	a.PermHWAddr = slices.Clone(a.PermHWAddr)
	a.Statistics = nil
	if v, ok := l.(*netlink.Vxlan); ok {
		v.Group, v.SrcAddr = slices.Clone(v.Group), slices.Clone(v.SrcAddr)
	}
	kind := l.Type()
	return Link{
		Index:       a.Index,
		Name:        a.Name,
		Kind:        kind,
		MTU:         a.MTU,
		ParentIndex: a.ParentIndex,
		MasterIndex: a.MasterIndex,
		NetNsID:     a.NetNsID,
		Up:          a.Flags&unix.IFF_UP != 0,
		Attrs:       l,
	}
}

// Links returns a snapshot of every link, sorted by index. The slice is
// shared with other callers: read it, do not modify it.
func (w *Watcher) Links() []Link {
	w.mu.RLock()
	out := w.sorted
	w.mu.RUnlock()
	if out != nil {
		return out
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sorted == nil {
		out := make([]Link, 0, len(w.links))
		for _, l := range w.links {
			out = append(out, l)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
		w.sorted = out
	}
	return w.sorted
}

// ByIndex returns the link with this ifindex.
func (w *Watcher) ByIndex(index int) (Link, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	l, ok := w.links[index]
	return l, ok
}

// RouteTo returns the ifindex of the link the watched namespace sends addr
// out of, by the kernel's own lookup (RTM_GETROUTE: policy rules, /32
// routes and connected subnets alike). A CNI routes each pod's address to
// the host end of that pod's veth, which the pod cannot change from inside
// its namespace: it is how the view tells a pod's namespace from one that
// merely added the pod's address.
func (w *Watcher) RouteTo(addr netip.Addr) (int, bool) {
	if w.routes != nil || w.handle == nil {
		i, ok := w.routes[addr]
		return i, ok
	}
	w.handleMu.RLock()
	defer w.handleMu.RUnlock()
	if w.closed {
		return 0, false
	}
	routes, err := w.handle.RouteGet(addr.AsSlice())
	if err != nil || len(routes) == 0 || routes[0].LinkIndex <= 0 {
		return 0, false
	}
	return routes[0].LinkIndex, true
}

// Resyncs counts full re-reads since start (the first included).
func (w *Watcher) Resyncs() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.resyncs
}

// Subscribe returns a channel that receives a value after the view changed
// (coalesced: one pending signal at most) and a function to stop.
func (w *Watcher) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}
}

func (w *Watcher) notify() {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// NewStatic is a view of fixed links that never changes and watches
// nothing: for tests and benchmarks of the collectors that read a view.
func NewStatic(links []Link) *Watcher {
	w := &Watcher{links: make(map[int]Link, len(links)), subs: map[chan struct{}]struct{}{}}
	for _, l := range links {
		w.links[l.Index] = l
	}
	return w
}

// WithRoutes gives a static watcher the answers of RouteTo (address to
// ifindex); a static watcher without them routes nothing.
func (w *Watcher) WithRoutes(routes map[netip.Addr]int) *Watcher {
	w.routes = routes
	return w
}
