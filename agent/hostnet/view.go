// Package hostnet is the agent's one view of the host's network: the links
// of its own namespace (from the netlink subscription), the node's other
// network namespaces (pinned under /run/netns or held by a process, found
// by one walker, known by their cookies), their interfaces, nsids and
// addresses, and the pods they
// belong to (joined with agent/kube's index by the node's route to each
// pod's address, which a pod cannot change). It is refreshed
// in the background and published as immutable snapshots, so a scrape
// reads memory only: no netlink dump, no walk of /proc.
package hostnet

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/internal/hostview"
	"github.com/netsonde/netsonde/internal/procnet"
)

// PodIndex is what the view needs of the cluster: which pod has an
// address, and the other nodes. agent/kube implements it.
type PodIndex interface {
	ByIP(addr netip.Addr) (cluster.Pod, bool)
	PeerNodes(k int) []cluster.Node
}

// Options for a View.
type Options struct {
	Logger *slog.Logger
	// Links is the agent's own namespace's link view; nil without netlink.
	Links *Watcher
	// Source reads namespaces; KernelSource{ProcPath: "/proc", PinDirs: PinDirs} by default.
	Source Source
	// Own is the cookie of the agent's namespace (read from the calling
	// thread when 0).
	Own uint64
	// Interval is how often every namespace is read again, so renamed
	// or deleted interfaces and changed MTUs inside pods show (default 10 s).
	Interval time.Duration
	// MinGap spaces the refreshes that events ask for (default 200 ms).
	MinGap time.Duration
	// GoneTTL is how long a vanished namespace is remembered as gone
	// (default 30 min; collectors forget theirs long before).
	GoneTTL time.Duration
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Parallel is how many namespaces a refresh reads at once (default
	// 4): 110 pods' links, addresses and counters in a fraction of the
	// interval, without a thread per namespace.
	Parallel int
}

// The types a view publishes live in internal/hostview, which the
// collectors framework can import without reaching into agent/ (DESIGN,
// layering): the framework defines what collectors read, this package
// fills it in.
type (
	Namespace  = hostview.Namespace
	State      = hostview.State
	Snapshot   = hostview.Snapshot
	Link       = hostview.Link
	NsLink     = hostview.NsLink
	Inspection = hostview.Inspection
)

// The states of a namespace in a snapshot.
const (
	Unknown = hostview.Unknown
	Present = hostview.Present
	Gone    = hostview.Gone
)

// View keeps the snapshots. Create it with New, run it with Start.
type View struct {
	opts   Options
	logger *slog.Logger
	snap   atomic.Pointer[Snapshot]
	kick   chan struct{}

	// ownIno is the inode of the agent's namespace: the walk finds it
	// too, and skips it without entering it.
	ownIno uint64

	mu     sync.Mutex
	pods   PodIndex
	wanted map[uint64]time.Time // cookies a collector asked for (Miss)
	// wantCounters are the counter names collectors want of every namespace.
	wantCounters procnet.Want
	// links is the link list the last refresh saw: which namespaces a
	// link change touches is the difference with the current one.
	links []Link
}

// New makes a view; it reads nothing until Start.
func New(opts Options) (*View, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Source == nil {
		opts.Source = KernelSource{ProcPath: "/proc", PinDirs: PinDirs}
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	if opts.MinGap <= 0 {
		opts.MinGap = 200 * time.Millisecond
	}
	if opts.GoneTTL <= 0 {
		opts.GoneTTL = 30 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.Own == 0 {
		own, err := OwnCookie()
		if err != nil {
			return nil, err
		}
		opts.Own = own
	}
	ownIno, err := OwnInode()
	if err != nil {
		return nil, err
	}
	v := &View{opts: opts, logger: opts.Logger, kick: make(chan struct{}, 1), wanted: map[uint64]time.Time{}, ownIno: ownIno}
	v.snap.Store(&Snapshot{Taken: opts.Now(), OwnCookie: opts.Own, ByCookie: map[uint64]*Namespace{}, ByIno: map[uint64]*Namespace{}, NsIDs: map[int]*Namespace{},
		GoneSince: map[uint64]time.Time{}, PodByNetns: map[uint64]cluster.Pod{}, PodByIface: map[int]cluster.Pod{}})
	return v, nil
}

// Start reads every namespace once, then keeps the view current until ctx
// ends: every Interval, and soon after a link change, a pod index change
// or a Miss.
func (v *View) Start(ctx context.Context) {
	v.refresh(ctx, true)
	go v.run(ctx)
}

func (v *View) run(ctx context.Context) {
	var linkEvents <-chan struct{}
	if v.opts.Links != nil {
		ch, stop := v.opts.Links.Subscribe()
		defer stop()
		linkEvents = ch
	}
	full := time.NewTicker(v.opts.Interval)
	defer full.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-full.C:
			v.refresh(ctx, true)
			continue
		case <-linkEvents:
		case <-v.kick:
		}
		v.refresh(ctx, false)
		// Events come in bursts (a pod's veth, then its address, then
		// its Pod object): one refresh per gap takes them together.
		select {
		case <-ctx.Done():
			return
		case <-time.After(v.opts.MinGap):
		}
	}
}

// Snapshot returns the current snapshot.
func (v *View) Snapshot() *Snapshot { return v.snap.Load() }

// Links returns the agent's namespace's links, sorted by index (shared:
// do not modify), or nil without netlink.
func (v *View) Links() []Link {
	if v.opts.Links == nil {
		return nil
	}
	return v.opts.Links.Links()
}

// ByIndex returns the agent's namespace's link with this ifindex.
func (v *View) ByIndex(index int) (Link, bool) {
	if v.opts.Links == nil {
		return Link{}, false
	}
	return v.opts.Links.ByIndex(index)
}

// Subscribe signals link changes of the agent's namespace (coalesced).
func (v *View) Subscribe() (<-chan struct{}, func()) {
	if v.opts.Links == nil {
		return make(chan struct{}), func() {}
	}
	return v.opts.Links.Subscribe()
}

// Miss tells the view a collector met a namespace (by cookie) the
// snapshot does not know: it looks for it soon, in the background. Miss
// never blocks.
func (v *View) Miss(cookie uint64) {
	v.mu.Lock()
	if _, ok := v.wanted[cookie]; !ok {
		v.wanted[cookie] = v.opts.Now()
	}
	v.mu.Unlock()
	v.Changed()
}

// WantCounters asks the view to read these counters (by nstat name:
// TcpExtListenOverflows, UdpRcvbufErrors, Udp6InErrors) of every
// namespace from the next refresh on, inside each namespace, whenever it
// reads the namespace (every Interval, and when it first sees it): a
// scrape reads them from the snapshot. Names add up over calls.
func (v *View) WantCounters(names ...string) {
	v.mu.Lock()
	if v.wantCounters == nil {
		v.wantCounters = procnet.Want{}
	}
	for _, n := range names {
		v.wantCounters[n] = true
	}
	v.mu.Unlock()
	v.Changed()
}

// Changed asks for a refresh soon (the pod index changed). Never blocks.
func (v *View) Changed() {
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

// SetPods joins the view with a pod index from now on.
func (v *View) SetPods(p PodIndex) {
	v.mu.Lock()
	v.pods = p
	v.mu.Unlock()
	v.Changed()
}

// ByNetns implements cluster.Resolver.
func (v *View) ByNetns(inode uint64) (cluster.Pod, bool) { return v.Snapshot().ByNetns(inode) }

// ByHostInterface implements cluster.Resolver.
func (v *View) ByHostInterface(ifindex int) (cluster.Pod, bool) {
	return v.Snapshot().ByHostInterface(ifindex)
}

// ByIP implements cluster.Resolver.
func (v *View) ByIP(addr netip.Addr) (cluster.Pod, bool) {
	if p := v.podIndex(); p != nil {
		return p.ByIP(addr)
	}
	return cluster.Pod{}, false
}

// PeerNodes implements cluster.Resolver.
func (v *View) PeerNodes(k int) []cluster.Node {
	if p := v.podIndex(); p != nil {
		return p.PeerNodes(k)
	}
	return nil
}

func (v *View) podIndex() PodIndex {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pods
}

// touched returns the nsids of the peers of links that changed since the
// last refresh: their namespaces are read again even on a partial refresh
// (a pod's eth0 deleted takes its host end with it, an MTU changed).
func (v *View) touched() map[int]bool {
	cur := v.Links()
	v.mu.Lock()
	prev := v.links
	v.links = cur
	v.mu.Unlock()
	out := map[int]bool{}
	i, j := 0, 0
	for i < len(prev) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(prev) && prev[i].Index < cur[j].Index):
			out[prev[i].NetNsID] = true
			i++
		case i == len(prev) || cur[j].Index < prev[i].Index:
			out[cur[j].NetNsID] = true
			j++
		default:
			if a, b := prev[i], cur[j]; a.Name != b.Name || a.MTU != b.MTU || a.NetNsID != b.NetNsID || a.ParentIndex != b.ParentIndex || a.Up != b.Up {
				out[a.NetNsID], out[b.NetNsID] = true, true
			}
			i++
			j++
		}
	}
	delete(out, -1)
	return out
}

// refresh walks the namespaces and publishes a new snapshot. A full one
// reads every namespace again; a partial one only those it has not read,
// those without an address or nsid yet (a pod whose CNI is still at work),
// and those behind links that changed. The walk finds namespaces by inode;
// reading one gets its cookie. A partial refresh keeps what it read of an
// inode only at the same path: a namespace made under a freed inode comes
// with a new path (a new pin, a new process) or with its veth (a link
// change), and a full refresh reads every cookie again.
func (v *View) refresh(ctx context.Context, full bool) {
	now := v.opts.Now()
	old := v.Snapshot()
	touched := v.touched()
	paths := v.opts.Source.Namespaces()
	next := &Snapshot{Taken: now, OwnCookie: old.OwnCookie, ByCookie: make(map[uint64]*Namespace, len(paths)), ByIno: make(map[uint64]*Namespace, len(paths)), NsIDs: map[int]*Namespace{},
		GoneSince: make(map[uint64]time.Time, len(old.GoneSince)), PodByNetns: map[uint64]cluster.Pod{}, PodByIface: map[int]cluster.Pod{}}
	v.mu.Lock()
	var want procnet.Want
	if len(v.wantCounters) > 0 {
		want = maps.Clone(v.wantCounters)
	}
	v.mu.Unlock()
	var reads []*Namespace
	for ino, path := range paths {
		if ino == v.ownIno {
			continue
		}
		prev := old.ByIno[ino]
		if prev != nil && !full && prev.Path == path && len(prev.Addrs) > 0 && prev.NsID >= 0 && !touched[prev.NsID] &&
			(want == nil || prev.Counters != nil) {
			next.ByCookie[prev.Cookie] = prev
			next.ByIno[ino] = prev
			continue
		}
		n := &Namespace{Inode: ino, Path: path, Read: now}
		if want != nil {
			n.Counters = procnet.Counters{}
		}
		reads = append(reads, n)
	}
	// Links, addresses and nsids on the calling thread: an nsid is the
	// one the caller's namespace gives (for the agent, the node's).
	for _, n := range reads {
		if ctx.Err() != nil {
			// Shutting down: a first read of thousands of namespaces
			// must not hold the agent's exit for seconds.
			return
		}
		insp, err := v.opts.Source.Inspect(n.Path)
		if err != nil {
			// Gone between the walk and the read (a pod's last process
			// exited), or not ours to read: skipped this round, at debug
			// level only, as churn makes it common.
			v.logger.Debug("network namespace unreadable", "path", n.Path, "err", err)
			continue
		}
		if insp.Cookie == old.OwnCookie {
			continue // the agent's own, by another path
		}
		n.Inspection = insp
		next.ByCookie[n.Cookie] = n
		next.ByIno[n.Inode] = n
	}
	// Counters enter each namespace from a thread of their own: a few
	// at a time, so 110 pods take a fraction of the interval without a
	// thread per namespace.
	if cs, ok := v.opts.Source.(CounterSource); ok && want != nil {
		sem := make(chan struct{}, v.opts.Parallel)
		var wg sync.WaitGroup
		for _, n := range reads {
			if next.ByCookie[n.Cookie] != n {
				continue
			}
			sem <- struct{}{}
			if ctx.Err() != nil {
				<-sem
				break
			}
			wg.Go(func() {
				defer func() { <-sem }()
				n.Counters = v.counters(cs, n.Path, want)
			})
		}
		wg.Wait()
	}
	if ctx.Err() != nil {
		return // the snapshot is partial: keep the last whole one
	}
	for _, n := range next.ByCookie {
		if n.NsID >= 0 {
			next.NsIDs[n.NsID] = n
		}
	}
	// Gone: what was present and is not now, what a collector asked for
	// and the walk did not find, and what was gone before, for GoneTTL.
	for c, since := range old.GoneSince {
		if _, back := next.ByCookie[c]; !back && now.Sub(since) < v.opts.GoneTTL {
			next.GoneSince[c] = since
		}
	}
	for c := range old.ByCookie {
		if _, still := next.ByCookie[c]; !still {
			next.GoneSince[c] = now
		}
	}
	v.mu.Lock()
	for c, asked := range v.wanted {
		if _, found := next.ByCookie[c]; !found && c != old.OwnCookie {
			if _, known := next.GoneSince[c]; !known {
				next.GoneSince[c] = asked
			}
		}
	}
	clear(v.wanted)
	pods := v.pods
	v.mu.Unlock()
	if pods != nil {
		v.join(next, pods)
	}
	v.snap.Store(next)
}

// counters reads the wanted counters of the namespace at path: empty
// (not nil, so the namespace is not read again before the next full
// refresh) when they cannot be read.
func (v *View) counters(cs CounterSource, path string, want procnet.Want) procnet.Counters {
	out := make(procnet.Counters, len(want))
	all, err := cs.Counters(path, want)
	if err != nil {
		v.logger.Debug("network namespace counters unreadable", "path", path, "err", err)
		return out
	}
	// A source may keep more than asked (the fixed one does).
	for name := range want {
		if c, ok := all[name]; ok {
			out[name] = c
		}
	}
	return out
}

// join attributes namespaces and host-side veths to pods. A pod can add
// any address inside its own namespace (CAP_NET_ADMIN there is enough), so
// an address alone does not say whose namespace it is: the host side does.
// First, the namespace the node routes a pod's address into (the route's
// link is a host-side veth whose nsid names it), which nothing inside a
// pod can change. Then, for what routes do not decide (a bridge CNI, no
// link view), a pod carried by one namespace only: the wired ones first
// (other agents' test namespaces, a stale one, carry the same address
// unwired), and a namespace taken by a pod no longer counts for another.
// A pod two namespaces still claim, or a namespace left as the only claim
// of two pods, is attributed to none: map order would be a guess that a
// pod adding its neighbour's address could win.
func (v *View) join(next *Snapshot, pods PodIndex) {
	// hostEnds are the host-side ifindexes of a namespace's veths whose
	// host end (in the link view) names that namespace by its nsid: a
	// veth's peer index means an interface of the agent's namespace only
	// when that interface names this namespace.
	hostEnds := func(n *Namespace) []int {
		var out []int
		for _, l := range n.Links {
			if l.PeerIndex <= 0 || n.NsID < 0 {
				continue
			}
			if h, ok := v.ByIndex(l.PeerIndex); ok && h.NetNsID == n.NsID {
				out = append(out, l.PeerIndex)
			}
		}
		return out
	}
	ends := map[uint64][]int{}
	claims := map[cluster.Pod][]uint64{}
	addrs := map[cluster.Pod][]netip.Addr{}
	for cookie, n := range next.ByCookie {
		ends[cookie] = hostEnds(n)
		for _, a := range n.Addrs {
			pod, ok := pods.ByIP(a)
			if !ok {
				continue
			}
			if !slices.Contains(claims[pod], cookie) {
				claims[pod] = append(claims[pod], cookie)
			}
			if !slices.Contains(addrs[pod], a) {
				addrs[pod] = append(addrs[pod], a)
			}
		}
	}
	// assign gives each namespace chosen for exactly one pod that pod.
	assign := func(choice map[cluster.Pod]uint64) bool {
		chosen := map[uint64]int{}
		for _, cookie := range choice {
			chosen[cookie]++
		}
		progress := false
		for pod, cookie := range choice {
			if chosen[cookie] != 1 {
				continue
			}
			next.PodByNetns[cookie] = pod
			for _, i := range ends[cookie] {
				next.PodByIface[i] = pod
			}
			delete(claims, pod)
			progress = true
		}
		return progress
	}
	routed := map[cluster.Pod]uint64{}
	if v.opts.Links != nil {
		for pod, cookies := range claims {
			slices.SortFunc(addrs[pod], netip.Addr.Compare)
			for _, a := range addrs[pod] {
				idx, ok := v.opts.Links.RouteTo(a)
				if !ok {
					continue
				}
				l, ok := v.ByIndex(idx)
				if !ok || l.NetNsID < 0 {
					continue
				}
				if n, ok := next.NsIDs[l.NetNsID]; ok && slices.Contains(cookies, n.Cookie) {
					routed[pod] = n.Cookie
					break
				}
			}
		}
	}
	assign(routed)
	for {
		choice := map[cluster.Pod]uint64{}
		for pod, cookies := range claims {
			var wired, unwired []uint64
			for _, cookie := range cookies {
				if _, taken := next.PodByNetns[cookie]; taken {
					continue
				}
				if len(ends[cookie]) > 0 {
					wired = append(wired, cookie)
				} else {
					unwired = append(unwired, cookie)
				}
			}
			switch {
			case len(wired) == 1:
				choice[pod] = wired[0]
			case len(wired) == 0 && len(unwired) == 1:
				choice[pod] = unwired[0]
			}
		}
		if !assign(choice) {
			break
		}
	}
}

// Fixed is a view of fixed links and namespaces that never reads the
// kernel: for unit tests and benchmarks of collectors. pods, if not nil,
// is joined as Start would.
func Fixed(own uint64, links []Link, pods PodIndex, namespaces ...Namespace) *View {
	src := fixedSource{}
	for _, n := range namespaces {
		if n.Cookie == 0 {
			n.Cookie = n.Inode
		}
		src[n.Inode] = n
	}
	v, _ := New(Options{Own: own, Links: NewStatic(links), Source: src})
	v.ownIno = own
	v.pods = pods
	// The namespaces' counters are wanted as given: a collector's
	// WantCounters finds them there, as it would after a refresh.
	for _, n := range namespaces {
		for name := range n.Counters {
			if v.wantCounters == nil {
				v.wantCounters = procnet.Want{}
			}
			v.wantCounters[name] = true
		}
	}
	v.refresh(context.Background(), true)
	return v
}

// fixedSource serves Fixed's namespaces, by a made-up path per inode.
type fixedSource map[uint64]Namespace

func (f fixedSource) Namespaces() map[uint64]string {
	out := make(map[uint64]string, len(f))
	for ino := range f {
		out[ino] = fmt.Sprintf("fixed:%d", ino)
	}
	return out
}

// Counters implements CounterSource: the namespace's fixed counters.
func (f fixedSource) Counters(path string, _ procnet.Want) (procnet.Counters, error) {
	var ino uint64
	if _, err := fmt.Sscanf(path, "fixed:%d", &ino); err != nil {
		return nil, err
	}
	return f[ino].Counters, nil
}

func (f fixedSource) Inspect(path string) (Inspection, error) {
	var ino uint64
	if _, err := fmt.Sscanf(path, "fixed:%d", &ino); err != nil {
		return Inspection{}, err
	}
	n, ok := f[ino]
	if !ok {
		return Inspection{}, fmt.Errorf("no namespace %d", ino)
	}
	return n.Inspection, nil
}
