package kube

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/netsonde/netsonde/cluster"
)

func testNode(name, podCIDR string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR},
		Status: corev1.NodeStatus{Addresses: addrs, Images: []corev1.ContainerImage{{Names: []string{"x"}}}}}
}

func internal(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a}
}

// fakeNodes answers the store's GETs from a map (the real kube-apiserver
// is in TestChosenPeersFollowNodes).
type fakeNodes struct {
	mu    sync.Mutex
	nodes map[string]*corev1.Node
}

func (f *fakeNodes) get(_ context.Context, name string) (*corev1.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
	}
	return n.DeepCopy(), nil
}

func nodeMeta(name string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// The store lists every node's name and counts them, reads only the nodes
// rendezvous hashing ranks highest (skipping one without an InternalIP for
// the next), reads a chosen node again when it changes and never one not
// chosen, and takes the next-ranked when a chosen node leaves.
func TestNodeStore(t *testing.T) {
	f := &fakeNodes{nodes: map[string]*corev1.Node{}}
	var names []any
	for i := range 20 {
		name := fmt.Sprintf("n%02d", i)
		f.nodes[name] = testNode(name, fmt.Sprintf("10.244.%d.0/24", i), internal(fmt.Sprintf("198.18.0.%d", i+1)))
		names = append(names, nodeMeta(name))
	}
	// The best-ranked of n00's peers has no InternalIP: it is read, and
	// the fourth-ranked is taken in its place.
	byScore := rankOf(t, "n00", 20)
	noAddr := byScore[0]
	f.nodes[noAddr].Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "198.18.1.1"}}

	changes := make(chan struct{}, 100)
	s := newNodeStore("n00", func() int { return 3 }, f.get, func() { changes <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.fetchLoop(ctx)
	if err := s.Replace(names, "1"); err != nil {
		t.Fatal(err)
	}
	chosenAre := func(what string, want ...string) {
		t.Helper()
		slices.Sort(want)
		deadline := time.Now().Add(5 * time.Second)
		for {
			var got []string
			for _, p := range s.chosenPeers() {
				got = append(got, p.Name)
			}
			if slices.Equal(got, want) && s.HasSynced() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: chosen %v, want %v", what, got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	chosenAre("after the list", byScore[1], byScore[2], byScore[3])
	if n := s.count(); n != 19 {
		t.Errorf("count %d, want 19", n)
	}
	if g := s.gets.Load(); g != 4 {
		t.Errorf("%d GETs after the list, want 4 (the top 3 and the one without an address)", g)
	}
	for _, p := range s.chosenPeers() {
		if p.Name == byScore[1] && p.OverlayIP != overlayIP(f.nodes[p.Name]) {
			t.Errorf("%s: overlay %v", p.Name, p.OverlayIP)
		}
	}

	// A status update of a node not chosen: no GET.
	before := s.gets.Load()
	if err := s.Update(nodeMeta(byScore[10])); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if g := s.gets.Load(); g != before {
		t.Errorf("an update of a node not chosen cost %d GETs", g-before)
	}

	// A chosen node's address changes: one GET, the new address.
	f.mu.Lock()
	f.nodes[byScore[2]].Status.Addresses = []corev1.NodeAddress{internal("198.18.2.2")}
	f.mu.Unlock()
	if err := s.Update(nodeMeta(byScore[2])); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.ContainsFunc(s.chosenPeers(), func(p cluster.Node) bool { return p.InternalIP == netip.MustParseAddr("198.18.2.2") }) {
		if time.Now().After(deadline) {
			t.Fatalf("the new address not seen: %v", s.chosenPeers())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g := s.gets.Load(); g != before+1 {
		t.Errorf("%d GETs for one update of a chosen node, want 1", g-before)
	}

	// A chosen node leaves: the next-ranked takes its place.
	f.mu.Lock()
	delete(f.nodes, byScore[1])
	f.mu.Unlock()
	if err := s.Delete(nodeMeta(byScore[1])); err != nil {
		t.Fatal(err)
	}
	chosenAre("after a chosen node left", byScore[2], byScore[3], byScore[4])
	if n := s.count(); n != 18 {
		t.Errorf("count %d, want 18", n)
	}
}

// rankOf returns the nodes n00..n(count-1) but self in the order
// rendezvous hashing ranks them from self.
func rankOf(t *testing.T, self string, count int) []string {
	t.Helper()
	var all []string
	for i := range count {
		all = append(all, fmt.Sprintf("n%02d", i))
	}
	var out []string
	for k := 1; k < count; k++ {
		top := cluster.Rendezvous(self, all, func(s string) string { return s }, k)
		for _, n := range top {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}
