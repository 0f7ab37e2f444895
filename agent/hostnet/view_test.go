package hostnet

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/netsonde/netsonde/cluster"
)

// fakeSource is a node's namespaces in memory, counting the calls.
type fakeSource struct {
	mu       sync.Mutex
	ns       map[uint64]Inspection
	walks    int
	inspects map[uint64]int
}

func newFakeSource() *fakeSource {
	return &fakeSource{ns: map[uint64]Inspection{}, inspects: map[uint64]int{}}
}

func (f *fakeSource) Namespaces() map[uint64]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.walks++
	out := map[uint64]string{}
	for ino := range f.ns {
		out[ino] = fmt.Sprintf("/run/netns/%d", ino)
	}
	return out
}

func (f *fakeSource) Inspect(path string) (Inspection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ino uint64
	fmt.Sscanf(path, "/run/netns/%d", &ino)
	f.inspects[ino]++
	n, ok := f.ns[ino]
	if !ok {
		return Inspection{}, fmt.Errorf("gone")
	}
	if n.Cookie == 0 {
		n.Cookie = ino // one number for both, unless a test says otherwise
	}
	return n, nil
}

func (f *fakeSource) set(ino uint64, in Inspection) {
	f.mu.Lock()
	f.ns[ino] = in
	f.mu.Unlock()
}

func (f *fakeSource) del(ino uint64) {
	f.mu.Lock()
	delete(f.ns, ino)
	f.mu.Unlock()
}

type podsByIP map[netip.Addr]cluster.Pod

func (p podsByIP) ByIP(a netip.Addr) (cluster.Pod, bool) { v, ok := p[a]; return v, ok }
func (podsByIP) PeerNodes(int) []cluster.Node            { return []cluster.Node{{Name: "n2"}} }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func pod(ip string, nsid, hostIfindex int) Inspection {
	return Inspection{NsID: nsid, Addrs: []netip.Addr{netip.MustParseAddr(ip)},
		Links: map[int]NsLink{1: {Name: "lo", MTU: 65536, Kind: "device"}, 2: {Name: "eth0", MTU: 1450, Kind: "veth", PeerIndex: hostIfindex}}}
}

func newTestView(t *testing.T, src Source, links []Link, c *clock) *View {
	t.Helper()
	v, err := New(Options{Own: 4026531840, Source: src, Links: NewStatic(links), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Pods are joined to their namespaces by address, and through the veth's
// peer index to the host end; interface names and far-end MTUs come from
// the namespace's one dump.
func TestSnapshotJoinsPodsAndNames(t *testing.T) {
	src := newFakeSource()
	src.set(100, pod("10.0.0.5", 3, 17))
	src.set(200, Inspection{NsID: -1, Links: map[int]NsLink{1: {Name: "lo"}}}) // no pod
	c := &clock{t: time.Unix(1000, 0)}
	host := []Link{{Index: 17, Name: "cali17", Kind: "veth", MTU: 1500, NetNsID: 3, ParentIndex: 2}}
	v := newTestView(t, src, host, c)
	v.SetPods(podsByIP{netip.MustParseAddr("10.0.0.5"): {Namespace: "shop", Name: "web-1"}})
	v.refresh(t.Context(), true)

	s := v.Snapshot()
	if p, ok := s.ByNetns(100); !ok || p.Name != "web-1" {
		t.Errorf("ByNetns(100) = %v %v, want web-1", p, ok)
	}
	if p, ok := v.ByHostInterface(17); !ok || p.Namespace != "shop" {
		t.Errorf("ByHostInterface(17) = %v %v, want shop/web-1", p, ok)
	}
	if _, ok := s.ByNetns(200); ok {
		t.Errorf("a namespace without a pod's address was attributed")
	}
	if s.Attributed() != 1 {
		t.Errorf("Attributed = %d, want 1", s.Attributed())
	}
	n, state, _ := s.Lookup(100)
	if state != Present || n.Links[2].Name != "eth0" {
		t.Errorf("Lookup(100) = %v %v", n, state)
	}
	if m, ok := s.PeerMTU(host[0]); !ok || m != 1450 {
		t.Errorf("PeerMTU = %d %v, want 1450", m, ok)
	}
	if got := v.PeerNodes(16); len(got) != 1 {
		t.Errorf("PeerNodes = %v", got)
	}
}

// A namespace made after another was freed gets its inode back, not its
// cookie: the view knows them apart, the first Gone and no longer its
// pod's, the second Present and its own pod's.
func TestReusedInodeIsAnotherNamespace(t *testing.T) {
	src := newFakeSource()
	first := pod("10.0.0.5", 3, 17)
	first.Cookie = 7
	src.set(100, first)
	c := &clock{t: time.Unix(1000, 0)}
	v := newTestView(t, src, []Link{{Index: 17, Name: "veth17", Kind: "veth", NetNsID: 3, ParentIndex: 2}}, c)
	v.SetPods(podsByIP{netip.MustParseAddr("10.0.0.5"): {Namespace: "shop", Name: "old"},
		netip.MustParseAddr("10.0.0.6"): {Namespace: "shop", Name: "new"}})
	v.refresh(t.Context(), true)
	if p, ok := v.ByNetns(7); !ok || p.Name != "old" {
		t.Fatalf("ByNetns(7) = %v %v, want old", p, ok)
	}

	second := pod("10.0.0.6", 3, 17)
	second.Cookie = 8
	src.set(100, second)
	c.t = c.t.Add(time.Second)
	v.refresh(t.Context(), true)
	s := v.Snapshot()
	if _, state, since := s.Lookup(7); state != Gone || !since.Equal(c.t) {
		t.Errorf("the first namespace: %v since %v, want Gone since %v", state, since, c.t)
	}
	if n, state, _ := s.Lookup(8); state != Present || n.Inode != 100 {
		t.Errorf("the second namespace: %v %v, want Present with inode 100", n, state)
	}
	if p, ok := s.ByNetns(7); ok {
		t.Errorf("ByNetns(7) = %v: the first namespace's pod moved to the second", p)
	}
	if p, ok := s.ByNetns(8); !ok || p.Name != "new" {
		t.Errorf("ByNetns(8) = %v %v, want new", p, ok)
	}
}

// A namespace that vanishes is Gone since the refresh that missed it; one
// a collector asks for (Miss) and no walk finds is Gone since it was asked
// for; gone entries expire after GoneTTL. A partial refresh reads only
// what is new or incomplete; a full one reads everything.
func TestGoneMissAndPartialRefresh(t *testing.T) {
	src := newFakeSource()
	src.set(100, pod("10.0.0.5", 3, 17))
	c := &clock{t: time.Unix(1000, 0)}
	v := newTestView(t, src, nil, c)
	v.refresh(t.Context(), true)

	src.set(300, pod("10.0.0.6", 4, 18))
	c.t = c.t.Add(time.Second)
	v.refresh(t.Context(), false)
	if src.inspects[100] != 1 || src.inspects[300] != 1 {
		t.Errorf("partial refresh read %v; want only the new namespace", src.inspects)
	}
	v.refresh(t.Context(), true)
	if src.inspects[100] != 2 || src.inspects[300] != 2 {
		t.Errorf("full refresh read %v; want every namespace again", src.inspects)
	}

	src.del(100)
	c.t = c.t.Add(time.Second)
	v.refresh(t.Context(), false)
	if _, state, since := v.Snapshot().Lookup(100); state != Gone || !since.Equal(c.t) {
		t.Errorf("deleted namespace: state %v since %v, want Gone since %v", state, since, c.t)
	}

	asked := c.t.Add(time.Second)
	c.t = asked
	v.Miss(999)
	c.t = c.t.Add(time.Second)
	v.refresh(t.Context(), false)
	if _, state, since := v.Snapshot().Lookup(999); state != Gone || !since.Equal(asked) {
		t.Errorf("asked-for namespace never found: state %v since %v, want Gone since %v", state, since, asked)
	}
	if _, state, _ := v.Snapshot().Lookup(12345); state != Unknown {
		t.Errorf("never-seen namespace: state %v, want Unknown", state)
	}

	c.t = c.t.Add(31 * time.Minute)
	v.refresh(t.Context(), false)
	if _, state, _ := v.Snapshot().Lookup(100); state != Unknown {
		t.Errorf("gone namespace past GoneTTL: state %v, want Unknown", state)
	}
}

// A link change in the agent's namespace makes a partial refresh read the
// namespace behind it again (a pod's eth0 renamed or its MTU changed).
func TestLinkChangeRereadsItsPeerNamespace(t *testing.T) {
	src := newFakeSource()
	src.set(100, pod("10.0.0.5", 3, 17))
	src.set(300, pod("10.0.0.6", 4, 18))
	w := NewStatic([]Link{{Index: 17, Kind: "veth", NetNsID: 3, MTU: 1500}, {Index: 18, Kind: "veth", NetNsID: 4, MTU: 1500}})
	c := &clock{t: time.Unix(1000, 0)}
	v, err := New(Options{Own: 1, Source: src, Links: w, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	v.refresh(t.Context(), true)
	w.mu.Lock()
	l := w.links[17]
	l.MTU = 1400
	w.links[17] = l
	w.sorted = nil
	w.mu.Unlock()
	v.refresh(t.Context(), false)
	if src.inspects[100] != 2 || src.inspects[300] != 1 {
		t.Errorf("after a change of the host end of nsid 3: reads %v, want namespace 100 read again, 300 not", src.inspects)
	}
}

// Reading a snapshot never calls the source: 100 rounds of every lookup a
// scrape makes, at 1,000 interfaces and 110 namespaces, make 0 calls.
func TestSnapshotReadsMakeNoCalls(t *testing.T) {
	src := newFakeSource()
	var links []Link
	for i := range 1000 {
		links = append(links, Link{Index: i + 2, Name: fmt.Sprintf("v%d", i), Kind: "veth", NetNsID: i, ParentIndex: 2})
	}
	for i := range 110 {
		src.set(uint64(1000+i), pod(fmt.Sprintf("10.1.%d.%d", i/200, i%200+1), i, i+2))
	}
	c := &clock{t: time.Unix(1000, 0)}
	v := newTestView(t, src, links, c)
	v.refresh(t.Context(), true)
	walks, inspects := src.walks, len(src.inspects)
	for range 100 {
		s := v.Snapshot()
		for _, l := range v.Links() {
			s.PeerMTU(l)
			v.ByHostInterface(l.Index)
		}
		for i := range 110 {
			s.Lookup(uint64(1000 + i))
			s.ByNetns(uint64(1000 + i))
		}
	}
	if src.walks != walks || len(src.inspects) != inspects {
		t.Errorf("snapshot reads called the source: walks %d→%d", walks, src.walks)
	}
}

// Two namespaces carry a pod's address (another agent's test namespace,
// or one not yet cleaned up): the one whose veth is wired to the agent's
// namespace is the pod's, and a veth peer index that only happens to equal
// one of the agent's ifindexes names nothing.
func TestJoinPrefersTheNamespaceWiredToTheAgent(t *testing.T) {
	src := newFakeSource()
	src.set(100, pod("10.0.0.5", -1, 17)) // elsewhere: no nsid here
	src.set(200, pod("10.0.0.5", 3, 17))  // wired: host link 17 names nsid 3
	src.set(300, pod("10.0.0.6", 9, 18))  // its peer 18 is not host link 18's peer
	host := []Link{{Index: 17, Kind: "veth", NetNsID: 3}, {Index: 18, Kind: "veth", NetNsID: 4}}
	c := &clock{t: time.Unix(1000, 0)}
	v := newTestView(t, src, host, c)
	v.SetPods(podsByIP{
		netip.MustParseAddr("10.0.0.5"): {Namespace: "shop", Name: "web"},
		netip.MustParseAddr("10.0.0.6"): {Namespace: "shop", Name: "db"},
	})
	v.refresh(t.Context(), true)
	s := v.Snapshot()
	if p, ok := s.ByNetns(200); !ok || p.Name != "web" {
		t.Errorf("wired namespace: %v %v, want web", p, ok)
	}
	if p, ok := s.ByNetns(100); ok {
		t.Errorf("the unwired namespace with the same address got %v", p)
	}
	if p, ok := s.ByHostInterface(17); !ok || p.Name != "web" {
		t.Errorf("host link 17: %v %v, want web", p, ok)
	}
	if p, ok := s.ByHostInterface(18); ok {
		t.Errorf("host link 18 named %v through a peer index of another namespace", p)
	}
	if p, ok := s.ByNetns(300); !ok || p.Name != "db" {
		t.Errorf("namespace 300 by address: %v %v, want db", p, ok)
	}
}

// Without a route to decide (a bridge CNI), a pod's address in a second
// wired namespace is resolved by what else is known: B's namespace is the
// only one with B's address, so A's is A's. When B holds only A's address,
// nothing tells the two apart and neither is attributed; the node's route
// to A's address through A's veth tells them apart. Map order never does
// (50 refreshes of each).
func TestJoinNeverByMapOrder(t *testing.T) {
	a, b := cluster.Pod{Namespace: "shop", Name: "a"}, cluster.Pod{Namespace: "shop", Name: "b"}
	ipA, ipB := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.6")
	host := []Link{{Index: 17, Kind: "veth", NetNsID: 3}, {Index: 18, Kind: "veth", NetNsID: 4}}
	for _, tc := range []struct {
		name   string
		bAddrs []netip.Addr
		routes map[netip.Addr]int
		wantA  bool
		wantB  cluster.Pod
	}{
		{"B adds A's address, no routes", []netip.Addr{ipA, ipB}, nil, true, b},
		{"B has only A's address, no routes", []netip.Addr{ipA}, nil, false, cluster.Pod{}},
		{"B has only A's address, routed", []netip.Addr{ipA}, map[netip.Addr]int{ipA: 17, ipB: 18}, true, cluster.Pod{}},
		{"B adds A's address, routed", []netip.Addr{ipA, ipB}, map[netip.Addr]int{ipA: 17, ipB: 18}, true, b},
	} {
		src := newFakeSource()
		src.set(100, pod("10.0.0.5", 3, 17))
		inB := pod("10.0.0.6", 4, 18)
		inB.Addrs = tc.bAddrs
		src.set(200, inB)
		v, err := New(Options{Own: 1, Source: src, Links: NewStatic(host).WithRoutes(tc.routes)})
		if err != nil {
			t.Fatal(err)
		}
		v.SetPods(podsByIP{ipA: a, ipB: b})
		for i := range 50 {
			v.refresh(t.Context(), true)
			s := v.Snapshot()
			gotA, okA := s.ByNetns(100)
			gotB, _ := s.ByNetns(200)
			ifB, _ := s.ByHostInterface(18)
			if okA != tc.wantA || (okA && gotA != a) || gotB != tc.wantB || ifB != tc.wantB {
				t.Errorf("%s, refresh %d: A's namespace %v %v, B's %v (veth %v); want A's attributed %v, B's %v", tc.name, i, gotA, okA, gotB, ifB, tc.wantA, tc.wantB)
				break
			}
		}
	}
}

// cancellingSource cancels the agent's context at its fifth Inspect, as
// a SIGTERM in the middle of a first read of thousands of namespaces.
type cancellingSource struct {
	*fakeSource
	cancel   func()
	inspects int
}

func (c *cancellingSource) Inspect(path string) (Inspection, error) {
	c.inspects++
	if c.inspects == 5 {
		c.cancel()
	}
	return c.fakeSource.Inspect(path)
}

// A refresh stops reading namespaces once the agent shuts down, and
// publishes no partial snapshot.
func TestRefreshStopsAtShutdown(t *testing.T) {
	src := newFakeSource()
	for i := range 1000 {
		src.set(uint64(100+i), pod(fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), i, 0))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cs := &cancellingSource{fakeSource: src, cancel: cancel}
	v := newTestView(t, cs, nil, &clock{t: time.Unix(1000, 0)})
	before := v.Snapshot()
	v.refresh(ctx, true)
	if cs.inspects != 5 {
		t.Errorf("%d of 1,000 namespaces read, want 5 (the read stops at the cancellation)", cs.inspects)
	}
	if v.Snapshot() != before {
		t.Errorf("a partial snapshot of %d namespaces was published", len(v.Snapshot().ByCookie))
	}
	v.refresh(t.Context(), true)
	if n := len(v.Snapshot().ByCookie); n != 1000 {
		t.Errorf("the next refresh found %d namespaces, want 1000", n)
	}
}
