package kube

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/netsonde/netsonde/cluster"
)

// The cluster's nodes are known only to learn the peers' addresses: the
// agent keeps, per node name, the cluster.Node entries rebuild hands out
// (about 200 bytes a node), not Node objects. A kubelet's Node is 15-25 KB
// (its images list most of it). TestNodeListMemory, 5,000 such nodes in
// the real kube-apiserver, agent RSS peak and steady: a shared informer
// given the whole list at once, 255 and 182 MiB (30 without nodes; the
// probe also read every node each time, see probe); the list paged and
// slimmed into the informer, 46 and 40 MiB (its store, indexer and delta
// queue of slim Nodes); this reflector and store of peers, 45 and 37.
// So the nodes have a reflector of their own, whose list is read a page
// at a time, every page reduced to peers before the next is asked for,
// and whose store is a map of peers.

// nodePage is how many nodes one list request asks for: the peak is one
// page decoded, and what the GC lets grow around it. At 5,000 nodes here,
// 100 a page: RSS peak 45 MiB, the list read in 9 s; 500 a page: 80 MiB
// and 2.4 s. The agent is not in a hurry for its peers.
const nodePage = 100

// nodeStore is the node reflector's store. The reflector gives it Node
// objects from the watch and nodePeers from the list.
type nodeStore struct {
	mu     sync.Mutex
	byName map[string][]cluster.Node
	synced bool
	// changed is called after a change that alters the peers.
	changed func()
}

func newNodeStore(changed func()) *nodeStore {
	return &nodeStore{byName: map[string][]cluster.Node{}, changed: changed}
}

// nodePeers is a node reduced to its peer entries: one per InternalIP.
// It is a runtime.Object only so that a list of them can pass through the
// reflector.
type nodePeers struct {
	metav1.TypeMeta
	name  string
	peers []cluster.Node
}

func (p *nodePeers) DeepCopyObject() runtime.Object {
	c := *p
	c.peers = slices.Clone(p.peers)
	return &c
}

// nodePeersList is the list the paged lister returns.
type nodePeersList struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []runtime.Object
}

func (l *nodePeersList) DeepCopyObject() runtime.Object {
	c := *l
	c.Items = slices.Clone(l.Items)
	return &c
}

// toPeers reduces a Node to its peer entries, in the order of its
// addresses.
func toPeers(n *corev1.Node) *nodePeers {
	p := &nodePeers{name: n.Name}
	over := overlayIP(n)
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			p.peers = append(p.peers, cluster.Node{Name: n.Name, InternalIP: ip, OverlayIP: over})
		}
	}
	return p
}

func (s *nodeStore) set(p *nodePeers) {
	s.mu.Lock()
	old, had := s.byName[p.name]
	s.byName[p.name] = p.peers
	s.mu.Unlock()
	// A kubelet writes its Node's status every few minutes (conditions,
	// images): the peers change far more rarely, and only then is the
	// index rebuilt.
	if !had || !slices.Equal(old, p.peers) {
		s.changed()
	}
}

// Add implements cache.ReflectorStore.
func (s *nodeStore) Add(o any) error {
	n, ok := o.(*corev1.Node)
	if !ok {
		return fmt.Errorf("node store: got %T", o)
	}
	s.set(toPeers(n))
	return nil
}

// Update implements cache.ReflectorStore.
func (s *nodeStore) Update(o any) error { return s.Add(o) }

// Delete implements cache.ReflectorStore.
func (s *nodeStore) Delete(o any) error {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	m, err := meta.Accessor(o)
	if err != nil {
		return fmt.Errorf("node store: %w", err)
	}
	s.mu.Lock()
	_, had := s.byName[m.GetName()]
	delete(s.byName, m.GetName())
	s.mu.Unlock()
	if had {
		s.changed()
	}
	return nil
}

// Replace implements cache.ReflectorStore: the list, as nodePeers.
func (s *nodeStore) Replace(items []any, _ string) error {
	byName := make(map[string][]cluster.Node, len(items))
	for _, o := range items {
		switch v := o.(type) {
		case *nodePeers:
			byName[v.name] = v.peers
		case *corev1.Node: // a watch-list (KUBE_FEATURE_WatchListClient) lists Nodes
			byName[v.Name] = toPeers(v).peers
		default:
			return fmt.Errorf("node store: listed %T", o)
		}
	}
	s.mu.Lock()
	s.byName, s.synced = byName, true
	s.mu.Unlock()
	s.changed()
	return nil
}

// Resync implements cache.ReflectorStore (no resync period: nothing to do).
func (s *nodeStore) Resync() error { return nil }

// HasSynced tells whether the first list is in.
func (s *nodeStore) HasSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// peers returns every node's entries but self's, sorted by name.
func (s *nodeStore) peers(self string) []cluster.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []cluster.Node
	for _, name := range slices.Sorted(maps.Keys(s.byName)) {
		if name != self {
			out = append(out, s.byName[name]...)
		}
	}
	return out
}

// nodeLister lists the nodes nodePage at a time and reduces each page to
// nodePeers before asking for the next; the watch is listWatch's, one
// Node per event, which the store reduces.
func (c *restClient) nodeLister() *cache.ListWatch {
	lw := c.listWatch("nodes", &corev1.NodeList{}, "")
	lw.ListWithContextFunc = func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
		// The reflector's first list asks for resourceVersion "0",
		// which the API server answers from its watch cache ignoring
		// the limit: the whole list in one response, the peak this
		// avoids. "" is a consistent read, paginated by every version
		// (from the watch cache since 1.34, from etcd before); the
		// watch then starts from the list's version.
		o := metav1.ListOptions{Limit: nodePage}
		out := &nodePeersList{}
		for {
			page := &corev1.NodeList{}
			if err := c.rest.Get().Resource("nodes").VersionedParams(&o, c.params).Do(ctx).Into(page); err != nil {
				return nil, fmt.Errorf("list nodes: %w", err)
			}
			for i := range page.Items {
				out.Items = append(out.Items, toPeers(&page.Items[i]))
			}
			if out.ResourceVersion == "" {
				out.ResourceVersion = page.ResourceVersion
			}
			if o.Continue = page.Continue; o.Continue == "" {
				return out, nil
			}
		}
	}
	return lw
}
