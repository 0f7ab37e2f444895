package kube

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/netsonde/netsonde/cluster"
)

// The cluster's nodes are known for two things: their names, among which
// the mesh and the path-MTU probe choose their peers by rendezvous hashing
// (cluster.Rendezvous, by name alone), and the addresses of the few they
// choose (16 each by default). A kubelet's Node is 15-25 KB (its images
// list most of it) and a kubelet writes its status every few minutes: a
// watch of full Nodes brought every agent every node's every status
// update, 16 MB a minute per agent at 5,000 nodes (hack/bench/kubescale,
// BENCHMARKS.md). So the names come from a metadata-only list and watch
// (PartialObjectMetadata: name, labels, annotations, managed fields; no
// spec or status), and the addresses from a GET of each chosen node, again
// whenever the watch says that node changed. A status update of a node not
// chosen costs its metadata event and nothing more.
//
// Memory: the store keeps the names (a map and a sorted slice) and the
// chosen nodes' cluster.Node entries; TestNodeListMemory, 5,000
// kubelet-sized nodes in the real kube-apiserver, measures the agent's
// RSS.

// nodePage is how many nodes one list request asks for: the peak is one
// page decoded. A node's metadata is about 1-2 KB (its managed fields most
// of it), so a page of 500 is about 1 MB.
const nodePage = 500

// nodesResource is the resource the metadata client lists and watches.
var nodesResource = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}

// defaultWant is how many top-ranked nodes' addresses the store learns
// before any prober asked: the mesh's and the path-MTU probe's default
// of 16 peers, so that with the defaults the first round already has them.
const defaultWant = 16

// nodeStore is the node reflector's store: the names, from the metadata
// watch, and the chosen nodes, fetched by fetchLoop.
type nodeStore struct {
	self string
	// want is how many top-ranked nodes with an InternalIP the probers
	// asked for (Resolver.PeerNodes' largest k).
	want func() int
	// get reads one Node in full.
	get func(ctx context.Context, name string) (*corev1.Node, error)
	// changed is called after a change of the names or of the chosen
	// nodes' entries.
	changed func()
	kick    chan struct{}
	// gets counts the GETs of nodes (tests, and why a status update of
	// a node not chosen costs none).
	gets atomic.Int64

	mu     sync.Mutex
	names  map[string]struct{}
	sorted []string // names in order, nil when they changed since
	listed bool
	chosen map[string]*chosenNode
	peers  []cluster.Node // the chosen nodes' entries, by name; replaced, never changed in place
}

// chosenNode is a node among the top-ranked, and what its last GET said.
type chosenNode struct {
	peers   []cluster.Node // one per InternalIP; none: it has no InternalIP
	fetched bool           // a GET has answered
	stale   bool           // a GET is due: never fetched, or changed since
}

func newNodeStore(self string, want func() int, get func(context.Context, string) (*corev1.Node, error), changed func()) *nodeStore {
	return &nodeStore{self: self, want: want, get: get, changed: changed, kick: make(chan struct{}, 1),
		names: map[string]struct{}{}, chosen: map[string]*chosenNode{}}
}

// nodeNames is a page of the list reduced to names. It is a runtime.Object
// only so that it can pass through the reflector.
type nodeNames struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []runtime.Object
}

func (l *nodeNames) DeepCopyObject() runtime.Object {
	c := *l
	c.Items = slices.Clone(l.Items)
	return &c
}

// toPeers reduces a Node to its peer entries, in the order of its
// addresses.
func toPeers(n *corev1.Node) []cluster.Node {
	var peers []cluster.Node
	over := overlayIP(n)
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			peers = append(peers, cluster.Node{Name: n.Name, InternalIP: ip, OverlayIP: over})
		}
	}
	return peers
}

func (s *nodeStore) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Add implements cache.ReflectorStore: a node came, or changed (Update).
func (s *nodeStore) Add(o any) error {
	m, err := meta.Accessor(o)
	if err != nil {
		return fmt.Errorf("node store: %w", err)
	}
	name := m.GetName()
	s.mu.Lock()
	_, known := s.names[name]
	if !known {
		s.names[name] = struct{}{}
		s.sorted = nil
	}
	c := s.chosen[name]
	if c != nil {
		// Its addresses may have changed: the event does not say
		// (they are in its status, which the metadata leaves out).
		c.stale = true
	}
	s.mu.Unlock()
	if !known {
		s.choose()
	}
	if c != nil {
		s.poke()
	}
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
	_, had := s.names[m.GetName()]
	delete(s.names, m.GetName())
	s.sorted = nil
	s.mu.Unlock()
	if had {
		s.choose()
	}
	return nil
}

// Replace implements cache.ReflectorStore: the list. Every chosen node is
// read again: a relist follows a watch that ended, and what happened
// meanwhile is unknown.
func (s *nodeStore) Replace(items []any, _ string) error {
	names := make(map[string]struct{}, len(items))
	for _, o := range items {
		m, err := meta.Accessor(o)
		if err != nil {
			return fmt.Errorf("node store: listed %T: %w", o, err)
		}
		names[m.GetName()] = struct{}{}
	}
	s.mu.Lock()
	s.names, s.sorted, s.listed = names, nil, true
	for _, c := range s.chosen {
		c.stale = true
	}
	s.mu.Unlock()
	s.choose()
	return nil
}

// Resync implements cache.ReflectorStore (no resync period: nothing to do).
func (s *nodeStore) Resync() error { return nil }

// HasSynced tells whether the first list is in and every chosen node has
// been read once.
func (s *nodeStore) HasSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.listed {
		return false
	}
	for _, c := range s.chosen {
		if !c.fetched {
			return false
		}
	}
	return true
}

// count is the number of nodes but self (netsonde_kube_peer_nodes).
func (s *nodeStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.names)
	if _, ok := s.names[s.self]; ok {
		n--
	}
	return n
}

// choose ranks the names from self's point of view and keeps the top
// want() nodes with an InternalIP: the top k for the smallest k that
// holds want() of them, as far as the GETs tell (a node not read yet
// counts as having one). Nodes no longer among them are forgotten, new
// ones are read.
func (s *nodeStore) choose() {
	want := s.want()
	s.mu.Lock()
	if s.sorted == nil {
		s.sorted = slices.Sorted(maps.Keys(s.names))
	}
	var top []string
	for k := want; ; {
		top = cluster.Rendezvous(s.self, s.sorted, func(n string) string { return n }, k)
		none := 0
		for _, n := range top {
			if c := s.chosen[n]; c != nil && c.fetched && len(c.peers) == 0 {
				none++
			}
		}
		if len(top)-none >= want || len(top) < k {
			break
		}
		k = want + none
	}
	chosen := make(map[string]*chosenNode, len(top))
	fetch := false
	for _, n := range top {
		c := s.chosen[n]
		if c == nil {
			c = &chosenNode{stale: true}
		}
		fetch = fetch || c.stale
		chosen[n] = c
	}
	s.chosen = chosen
	changed := s.publish()
	s.mu.Unlock()
	if fetch {
		s.poke()
	}
	if changed {
		s.changed()
	}
}

// publish makes the entries of the chosen nodes read so far the peers; it
// tells whether they changed. s.mu is held.
func (s *nodeStore) publish() bool {
	var peers []cluster.Node
	for _, n := range slices.Sorted(maps.Keys(s.chosen)) {
		peers = append(peers, s.chosen[n].peers...)
	}
	if slices.Equal(peers, s.peers) {
		return false
	}
	s.peers = peers
	return true
}

// chosenPeers returns the chosen nodes' entries, by name. The slice is
// shared: it is replaced, never changed in place.
func (s *nodeStore) chosenPeers() []cluster.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers
}

// nextStale returns a chosen node due for a GET, and marks it read.
func (s *nodeStore) nextStale() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, c := range s.chosen {
		if c.stale {
			c.stale = false
			return n, true
		}
	}
	return "", false
}

// fetchLoop reads the chosen nodes due for it, one at a time, until ctx
// ends. A failed GET is tried again with backoff (1 s up to 30 s); a node
// not found has no address (its deletion is the watch's to tell).
func (s *nodeStore) fetchLoop(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		for {
			name, ok := s.nextStale()
			if !ok {
				break
			}
			n, err := s.get(ctx, name)
			s.gets.Add(1)
			if ctx.Err() != nil {
				return
			}
			var peers []cluster.Node
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				s.mu.Lock()
				if c := s.chosen[name]; c != nil {
					c.stale = true
				}
				s.mu.Unlock()
				backoff = min(max(2*backoff, time.Second), 30*time.Second)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				continue
			default:
				peers = toPeers(n)
			}
			backoff = 0
			s.mu.Lock()
			c := s.chosen[name]
			hadNone := c != nil && c.fetched && len(c.peers) == 0
			if c != nil {
				c.peers, c.fetched = peers, true
			}
			s.mu.Unlock()
			if c != nil && hadNone != (len(peers) == 0) {
				// Whether it has an address decides the ranking.
				s.choose()
				continue
			}
			s.mu.Lock()
			changed := s.publish()
			s.mu.Unlock()
			if changed {
				s.changed()
			}
		}
	}
}

// nodeLister lists the nodes' metadata nodePage at a time, each page
// reduced to names before the next is asked for, and watches their
// metadata.
func (c *restClient) nodeLister() *cache.ListWatch {
	nodes := c.meta.Resource(nodesResource)
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
			// The reflector's first list asks for resourceVersion "0",
			// which the API server answers from its watch cache
			// ignoring the limit: the whole list in one response.
			// "" is a consistent read, paginated by every version;
			// the watch then starts from the list's version.
			o := metav1.ListOptions{Limit: nodePage}
			out := &nodeNames{}
			for {
				page, err := nodes.List(ctx, o)
				if err != nil {
					return nil, fmt.Errorf("list nodes: %w", err)
				}
				for i := range page.Items {
					out.Items = append(out.Items, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: page.Items[i].Name}})
				}
				if out.ResourceVersion == "" {
					out.ResourceVersion = page.ResourceVersion
				}
				if o.Continue = page.Continue; o.Continue == "" {
					return out, nil
				}
			}
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := nodes.Watch(ctx, o)
			if err != nil {
				return nil, fmt.Errorf("watch nodes: %w", err)
			}
			return w, nil
		},
	}
}

// getNode reads one Node in full.
func (c *restClient) getNode(ctx context.Context, name string) (*corev1.Node, error) {
	n := &corev1.Node{}
	if err := c.rest.Get().Resource("nodes").Name(name).Do(ctx).Into(n); err != nil {
		return nil, fmt.Errorf("get node %s: %w", name, err)
	}
	return n, nil
}
