package kube

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netsonde/netsonde/cluster"
)

func testNode(name, podCIDR string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR},
		Status: corev1.NodeStatus{Addresses: addrs, Images: []corev1.ContainerImage{{Names: []string{"x"}}}}}
}

// The store keeps each node's InternalIPs with its overlay address, lists
// every node but self by name, and asks for a rebuild only when a node's
// peers change: a kubelet's status update (new images, a heartbeat) is
// not one.
func TestNodeStore(t *testing.T) {
	changes := 0
	s := newNodeStore(func() { changes++ })
	a := testNode("a", "10.244.1.0/24", corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "198.18.0.1"})
	b := testNode("b", "10.244.2.0/24",
		corev1.NodeAddress{Type: corev1.NodeHostName, Address: "b"},
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "fd00:5e::2"},
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "198.18.0.2"})
	c := testNode("c", "", corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "198.18.0.3"})
	if err := s.Replace([]any{toPeers(a), toPeers(b), c}, "1"); err != nil {
		t.Fatal(err)
	}
	if !s.HasSynced() || changes != 1 {
		t.Fatalf("after the list: synced %v, %d changes", s.HasSynced(), changes)
	}
	want := []cluster.Node{
		{Name: "b", InternalIP: netip.MustParseAddr("fd00:5e::2"), OverlayIP: netip.MustParseAddr("10.244.2.1")},
		{Name: "b", InternalIP: netip.MustParseAddr("198.18.0.2"), OverlayIP: netip.MustParseAddr("10.244.2.1")},
	}
	if got := s.peers("a"); !slices.Equal(got, want) {
		t.Fatalf("peers of a = %v, want %v", got, want)
	}

	b2 := b.DeepCopy()
	b2.Status.Images = nil
	b2.ResourceVersion = "2"
	if err := s.Update(b2); err != nil {
		t.Fatal(err)
	}
	if changes != 1 {
		t.Errorf("a status update that leaves the addresses asked for a rebuild")
	}
	b2.Annotations = map[string]string{OverlayAnnotation: "100.64.0.2"}
	if err := s.Update(b2); err != nil {
		t.Fatal(err)
	}
	if got := s.peers("a"); changes != 2 || len(got) != 2 || got[0].OverlayIP != netip.MustParseAddr("100.64.0.2") {
		t.Errorf("after the overlay annotation: %d changes, peers %v", changes, got)
	}
	if err := s.Delete(b2); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(b2); err != nil {
		t.Fatal(err)
	}
	if got := s.peers("a"); changes != 3 || len(got) != 0 {
		t.Errorf("after deleting b (twice): %d changes, peers %v", changes, got)
	}
	if got := s.peers("c"); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("peers of c = %v, want a", got)
	}
}
