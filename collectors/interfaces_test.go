package collectors

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/hostview"
)

// fakeNet is a link view whose links the test sets, and whose link events
// it sends.
type fakeNet struct {
	HostNet // the methods Interfaces does not use: nil

	mu           sync.Mutex
	links        map[int]hostview.Link
	changed      chan struct{}
	unsubscribed bool
}

func newFakeNet(links ...hostview.Link) *fakeNet {
	n := &fakeNet{links: map[int]hostview.Link{}, changed: make(chan struct{}, 1)}
	for _, l := range links {
		n.links[l.Index] = l
	}
	return n
}

func (n *fakeNet) Links() []hostview.Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []hostview.Link
	for _, l := range n.links {
		out = append(out, l)
	}
	return out
}

func (n *fakeNet) ByIndex(i int) (hostview.Link, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.links[i]
	return l, ok
}

func (n *fakeNet) Subscribe() (<-chan struct{}, func()) {
	return n.changed, func() {
		n.mu.Lock()
		n.unsubscribed = true
		n.mu.Unlock()
	}
}

// set replaces the links and sends a link event.
func (n *fakeNet) set(links ...hostview.Link) {
	n.mu.Lock()
	n.links = map[int]hostview.Link{}
	for _, l := range links {
		n.links[l.Index] = l
	}
	n.mu.Unlock()
	n.changed <- struct{}{}
}

func (n *fakeNet) remove(i int) {
	n.mu.Lock()
	delete(n.links, i)
	n.mu.Unlock()
}

// fakeAttacher records calls. Its first attach takes a while and
// checks that no other runs meanwhile.
type fakeAttacher struct {
	net *fakeNet

	mu       sync.Mutex
	attached map[int]string
	attaches map[int]int // calls per ifindex
	detaches map[int]int
	calls    int
	// firstRunning: the first attach has begun and not ended.
	firstRunning bool
	overlaps     int // attaches that ran beside the first one
	started      int // EndStartup calls
	startedAt    int // attaches before EndStartup
	// fail says how an interface's attach fails: "error", "enodev",
	// "deleted" (the interface goes from the view meanwhile).
	fail map[int]string
}

func newFakeAttacher(net *fakeNet) *fakeAttacher {
	return &fakeAttacher{net: net, attached: map[int]string{}, attaches: map[int]int{}, detaches: map[int]int{}, fail: map[int]string{}}
}

func (f *fakeAttacher) Attach(ifindex int, v string) error {
	f.mu.Lock()
	f.calls++
	first := f.calls == 1
	if f.firstRunning {
		f.overlaps++
	}
	f.firstRunning = f.firstRunning || first
	f.attaches[ifindex]++
	how := f.fail[ifindex]
	f.mu.Unlock()
	if first {
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if first {
		f.firstRunning = false
	}
	switch how {
	case "error":
		return fmt.Errorf("interface %d: tc filter add: %w", ifindex, unix.EPERM)
	case "enodev":
		return fmt.Errorf("interface %d: tcx ingress: %w", ifindex, unix.ENODEV)
	case "deleted":
		f.net.remove(ifindex)
		return fmt.Errorf("interface %d: %w", ifindex, unix.EINVAL)
	}
	f.attached[ifindex] = v
	return nil
}

func (f *fakeAttacher) Detach(ifindex int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detaches[ifindex]++
	delete(f.attached, ifindex)
}

func (f *fakeAttacher) Attached() map[int]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.attached)
}

func (f *fakeAttacher) Each(fn func(int, string)) {
	for i, v := range f.Attached() {
		fn(i, v)
	}
}

func (f *fakeAttacher) Hooks() map[string]int { return map[string]int{"tc": len(f.Attached())} }

func (f *fakeAttacher) EndStartup(func(int, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started++
	f.startedAt = f.calls
}

func link(i int, name string) hostview.Link { return hostview.Link{Index: i, Name: name} }

// wantAllButLo: every link but lo, valued by its name.
var wantAllButLo = InterfaceOptions[string]{What: "test", Want: func(l hostview.Link) (string, bool) {
	return l.Name, l.Name != "lo"
}}

func waitAttached(t *testing.T, a *fakeAttacher, want map[int]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !maps.Equal(a.Attached(), want) {
		if time.Now().After(deadline) {
			got := a.Attached()
			for i, v := range want {
				if got[i] != v {
					t.Errorf("interface %d attached with %q, want %q", i, got[i], v)
				}
			}
			for i, v := range got {
				if _, ok := want[i]; !ok {
					t.Errorf("interface %d attached with %q, want none", i, v)
				}
			}
			t.FailNow()
		}
		time.Sleep(time.Millisecond)
	}
}

// TestInterfacesFollowLinks: the wanted links get the programs at start,
// the first one alone, then the start-up ends; a link event detaches the
// links gone or no longer wanted, attaches the new ones, re-attaches the
// one whose value changed and leaves the others alone.
func TestInterfacesFollowLinks(t *testing.T) {
	const n = 200
	links := []hostview.Link{link(1, "lo")}
	for i := 2; i < n+2; i++ {
		links = append(links, link(i, fmt.Sprintf("veth%d", i)))
	}
	net := newFakeNet(links...)
	a := newFakeAttacher(net)
	f := NewInterfaces(Deps{Net: net}, a, wantAllButLo)
	f.Start(context.Background())
	defer f.Close()

	want := map[int]string{}
	for i := 2; i < n+2; i++ {
		want[i] = fmt.Sprintf("veth%d", i)
	}
	if got := a.Attached(); !maps.Equal(got, want) {
		t.Fatalf("after start, attached %d interfaces, want the %d but lo", len(got), n)
	}
	a.mu.Lock()
	overlaps, started, startedAt, calls := a.overlaps, a.started, a.startedAt, a.calls
	a.mu.Unlock()
	if overlaps != 0 || calls != n {
		t.Errorf("%d attaches ran beside the first one of %d, want 0 of %d", overlaps, calls, n)
	}
	if started != 1 || startedAt != n {
		t.Errorf("start-up ended %d times, after %d attaches; want once after %d", started, startedAt, n)
	}

	// veth2 goes, veth3 is renamed (a new value), lo stays unwanted,
	// 300 comes; the rest stay as they are.
	links = links[:0]
	links = append(links, link(1, "lo"), link(3, "eth3"), link(300, "veth300"))
	for i := 4; i < n+2; i++ {
		links = append(links, link(i, fmt.Sprintf("veth%d", i)))
	}
	delete(want, 2)
	want[3], want[300] = "eth3", "veth300"
	net.set(links...)
	waitAttached(t, a, want)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.detaches[2] != 1 || len(a.detaches) != 1 {
		t.Errorf("detaches %v, want veth2 (2) once", a.detaches)
	}
	if a.attaches[3] != 2 || a.attaches[300] != 1 || a.attaches[1] != 0 || a.attaches[4] != 1 || a.calls != n+2 {
		t.Errorf("%d attaches: veth3 %d, veth300 %d, lo %d, veth4 %d; want %d: 2, 1, 0, 1", a.calls, a.attaches[3], a.attaches[300], a.attaches[1], a.attaches[4], n+2)
	}
	if a.started != 1 {
		t.Errorf("start-up ended %d times, want once", a.started)
	}
}

// TestInterfacesFailures: an attach that fails on an interface still there
// is a failure, and the collector is down while none is attached; an
// interface deleted while it was attached (gone from the view, or ENODEV)
// is not.
func TestInterfacesFailures(t *testing.T) {
	net := newFakeNet(link(2, "eth0"), link(3, "veth3"), link(4, "veth4"))
	a := newFakeAttacher(net)
	a.fail = map[int]string{2: "error", 3: "enodev", 4: "deleted"}
	f := NewInterfaces(Deps{Net: net}, a, wantAllButLo)
	f.Start(context.Background())
	defer f.Close()

	if got := f.Failures(); got != 1 {
		t.Errorf("%d failures, want 1 (eth0's)", got)
	}
	const down = "no interface attached (1 failures, last: interface 2: tc filter add: operation not permitted)"
	if err := f.Err(len(f.Attached())); err == nil || err.Error() != down {
		t.Errorf("Err = %v, want %q", err, down)
	}

	// eth0 attaches on the next event: up again, still one failure.
	a.mu.Lock()
	a.fail = map[int]string{3: "enodev"}
	a.mu.Unlock()
	net.set(link(2, "eth0"), link(3, "veth3"))
	waitAttached(t, a, map[int]string{2: "eth0"})
	if err := f.Err(len(f.Attached())); err != nil {
		t.Errorf("Err = %v with eth0 attached, want nil", err)
	}
	if got := f.Failures(); got != 1 {
		t.Errorf("%d failures, want still 1", got)
	}
}

// TestInterfacesNoneWanted: nothing wanted is not down, whatever failed
// before.
func TestInterfacesNoneWanted(t *testing.T) {
	net := newFakeNet(link(1, "lo"))
	a := newFakeAttacher(net)
	f := NewInterfaces(Deps{Net: net}, a, wantAllButLo)
	f.Start(context.Background())
	if err := f.Err(0); err != nil {
		t.Errorf("Err = %v with nothing wanted", err)
	}
	f.Close()
	net.mu.Lock()
	defer net.mu.Unlock()
	if !net.unsubscribed {
		t.Error("Close left the link events subscribed")
	}
}
