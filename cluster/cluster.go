// Package cluster is what the collectors know of the Kubernetes cluster:
// which pod a network namespace, interface or address belongs to, and which
// other nodes exist. Collectors are given a Resolver; without a cluster it
// is None, every namespace/pod label stays empty (the host) and there are
// no peers. The client-go side that fills it lives in agent/kube.
package cluster

import "net/netip"

// Pod names a pod. The zero value is the host.
type Pod struct {
	Namespace string
	Name      string
}

// Node is another node of the cluster.
type Node struct {
	Name       string
	InternalIP netip.Addr
	// OverlayIP is an address of the node reached through the pod
	// network (the overlay): the annotation netsonde.io/overlay-ip, else
	// the first address of spec.podCIDR (the CNI bridge or gateway on
	// flannel, kindnet and bridge-based CNIs); invalid when neither exists.
	OverlayIP netip.Addr
}

// Resolver answers from in-memory state only: it is called on the scrape
// path and must not do I/O.
type Resolver interface {
	// ByNetns returns the pod whose network namespace has this cookie
	// (net->net_cookie in the kernel, SO_NETNS_COOKIE of a socket made
	// inside it). Not the inode: a new namespace gets a freed one back at
	// once, and with it would get a vanished pod's counts.
	ByNetns(cookie uint64) (Pod, bool)
	// ByIP returns the pod that has this address.
	ByIP(addr netip.Addr) (Pod, bool)
	// ByHostInterface returns the pod behind a host-side interface of the
	// agent's namespace (the host end of a pod's veth).
	ByHostInterface(ifindex int) (Pod, bool)
	// PeerNodes lists other nodes (mesh and path-MTU probe targets),
	// one entry per InternalIP, among them at least the k that
	// rendezvous hashing ranks highest from this node among the nodes
	// with an InternalIP: a prober's Rendezvous(self, PeerNodes(k), .., k)
	// chooses as it would over every node. It may list more, every node
	// for a resolver that knows them all; agent/kube learns the
	// addresses of the chosen only (a GET of each), and of the k asked
	// for from the first call with that k on: a prober asks with the
	// same k every round. The slice is shared and read-only: it is
	// replaced, never changed in place, when the nodes change, so a
	// caller may keep it and compare (see Choice) without a copy per
	// round.
	PeerNodes(k int) []Node
}

// None attributes nothing: every series belongs to the host.
type None struct{}

func (None) ByNetns(uint64) (Pod, bool)      { return Pod{}, false }
func (None) ByIP(netip.Addr) (Pod, bool)     { return Pod{}, false }
func (None) ByHostInterface(int) (Pod, bool) { return Pod{}, false }
func (None) PeerNodes(int) []Node            { return nil }
