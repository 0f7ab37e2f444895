// Package kube is the agent's view of the Kubernetes cluster: an informer
// for the pods on this node and a reflector keeping the other nodes'
// addresses (nodes.go), and from them an index that
// names the pod behind an address and lists the peer nodes. agent/hostnet
// joins it with the node's network namespaces (no netlink, no /proc here).
// Every answer comes from maps rebuilt in the background, so the scrape
// path does no I/O.
package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/netsonde/netsonde/cluster"
)

// Config of the cluster view.
type Config struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster config when
	// running in a pod, and no cluster otherwise.
	Kubeconfig string
	// NodeName is this node's name (--node-name, or NODE_NAME from the
	// downward API).
	NodeName string
	// Changed, if set, is called after every rebuild of the index (the
	// host network view joins pods to namespaces by address then).
	Changed func()
	// Attributed, if set, counts the pods whose network namespace was
	// found on this node (netsonde_kube_pods_attributed).
	Attributed func() int
	// MaxPods caps the distinct pods handed out as labels; pods beyond
	// it are labelled OverflowPod.
	MaxPods int
	// Refresh is how often the address-to-pod map is rebuilt even
	// without pod events (default 10 s).
	Refresh time.Duration
	// Probe is how often the agent checks that it may still list pods
	// and nodes while all is well (default 15 s); see probeLoop.
	Probe time.Duration
	// StartWait bounds how long Start waits for the first sync (default
	// 1 s): the agent's readiness must not wait for the API server.
	StartWait time.Duration
	// TuneREST, if set, adjusts the client configuration before the
	// client is made. The scale benchmark (hack/bench/kubescale) counts
	// each simulated agent's bytes with it and gives each its own
	// connection, as separate nodes have.
	TuneREST func(*rest.Config)
}

// OverflowPod is the pod label of series of pods beyond Config.MaxPods.
const OverflowPod = "_overflow"

// ErrNoCluster means no kubeconfig was given and the agent does not run in
// a pod: it runs standalone.
var ErrNoCluster = errors.New("no kubeconfig and not in a cluster")

// Resolver implements cluster.Resolver from informers.
type Resolver struct {
	cfg    Config
	logger *slog.Logger

	client *restClient
	// inf is nil until the informers first sync: the agent starts,
	// and counts, without the API server.
	inf   atomic.Pointer[informers]
	dirty chan struct{}

	// up is the API server's state as last seen: the informers have
	// synced, and it can be reached and lets this agent list pods and
	// nodes (netsonde_kube_up).
	up       atomic.Bool
	syncLost chan struct{} // a watch failed: probe now
	joined   chan struct{} // closed when the informers first sync
	tried    chan struct{} // closed after the first attempt to join

	// want is the largest k a prober asked PeerNodes for: how many
	// top-ranked nodes' addresses the node store learns.
	want atomic.Int64

	mu    sync.RWMutex
	byIP  map[netip.Addr]cluster.Pod
	peers []cluster.Node
	// nodes counts the other nodes (netsonde_kube_peer_nodes), of which
	// peers holds the chosen.
	nodes int
	// podCount counts the node's pods (not hostNetwork), with or without
	// an address yet.
	podCount int
}

// Start checks the configuration and joins the cluster in the background:
// the informers start as soon as the API server answers, and the agent
// retries with backoff until it does. Start waits for the first sync at
// most StartWait, so that with a healthy API server the first scrape
// already names pods, and with none (a refused connection) the agent is
// ready at once. It
// returns ErrNoCluster when there is no cluster, and an error only for a
// configuration that can never work.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Resolver, error) {
	rc, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if cfg.NodeName == "" {
		return nil, errors.New("node name unknown: set --node-name or NODE_NAME (the DaemonSet sets it from the downward API)")
	}
	if cfg.MaxPods <= 0 {
		cfg.MaxPods = 1000
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = 10 * time.Second
	}
	if cfg.Probe == 0 {
		cfg.Probe = 15 * time.Second
	}
	if cfg.StartWait == 0 {
		cfg.StartWait = time.Second
	}
	if cfg.TuneREST != nil {
		cfg.TuneREST(rc)
	}
	client, err := coreClient(rc)
	if err != nil {
		return nil, err
	}
	r := &Resolver{cfg: cfg, logger: logger, client: client, dirty: make(chan struct{}, 1), syncLost: make(chan struct{}, 1),
		joined: make(chan struct{}), tried: make(chan struct{}), byIP: map[netip.Addr]cluster.Pod{}}
	r.want.Store(defaultWant)
	go r.loop(ctx)
	go r.probeLoop(ctx)
	select {
	case <-r.tried:
	case <-ctx.Done():
	case <-time.After(cfg.StartWait):
	}
	return r, nil
}

// Joined is closed once the informers have synced for the first time.
func (r *Resolver) Joined() <-chan struct{} { return r.joined }

// informers are the pod informer and the node store of one connection to
// the API server, and the function that stops them.
type informers struct {
	pods  cache.SharedIndexInformer
	nodes *nodeStore
	stop  context.CancelFunc
}

// startInformers starts the pod informer and the node reflector; synced
// waits for their first list.
func (r *Resolver) startInformers(ctx context.Context) (*informers, error) {
	ctx, stop := context.WithCancel(ctx)
	inf := &informers{stop: stop}
	// Pods of this node only: the field selector keeps the watch, and the
	// agent's memory, proportional to this node's pods, not the cluster's.
	inf.pods = cache.NewSharedIndexInformer(r.client.listWatch("pods", &corev1.PodList{},
		fields.OneTermEqualSelector("spec.nodeName", r.cfg.NodeName).String()), &corev1.Pod{}, 0, cache.Indexers{})
	// The caches hold only what rebuild reads: a pod's spec, managed
	// fields, labels and container statuses are most of its size.
	if err := inf.pods.SetTransform(slimPod); err != nil {
		stop()
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	inf.nodes = newNodeStore(r.cfg.NodeName, func() int { return int(r.want.Load()) }, r.client.getNode, r.markDirty)
	nodes := cache.NewReflectorWithOptions(r.client.nodeLister(), &metav1.PartialObjectMetadata{}, inf.nodes, cache.ReflectorOptions{Name: "nodes"})
	mark := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.markDirty() },
		UpdateFunc: func(any, any) { r.markDirty() },
		DeleteFunc: func(any) { r.markDirty() },
	}
	if _, err := inf.pods.AddEventHandler(mark); err != nil {
		stop()
		return nil, err
	}
	// The node reflector's errors are client-go's default (logged): the
	// pod informer's, and the probe every Probe, tell the state.
	if err := inf.pods.SetWatchErrorHandlerWithContext(r.watchError); err != nil {
		stop()
		return nil, fmt.Errorf("watch error handler: %w", err)
	}
	go inf.pods.RunWithContext(ctx)
	go nodes.RunWithContext(ctx)
	go inf.nodes.fetchLoop(ctx)
	return inf, nil
}

// synced waits, 30 s at most, for the informers' first list. A timeout
// leaves them running: see pending in probeLoop.
func (inf *informers) synced(ctx context.Context) error {
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.pods.HasSynced, inf.nodes.HasSynced) {
		return errNotSynced
	}
	return nil
}

var errNotSynced = errors.New("informers did not sync within 30s: is the API server reachable, and may this ServiceAccount list pods and nodes?")

// slow tells a probe that failed because the API server answered too
// late (or asked to retry later) from one that could not reach it or was
// refused.
func slow(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err)
}

// watchError is told of every failed list or watch of the informers. The
// reflector retries on its own, with backoff; the error only marks the
// state lost until a probe succeeds. A watch that ends normally (EOF) or
// whose resource version expired is routine and changes nothing.
func (r *Resolver) watchError(ctx context.Context, refl *cache.Reflector, err error) {
	cache.DefaultWatchErrorHandler(ctx, refl, err)
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return
	}
	select {
	case r.syncLost <- struct{}{}:
	default:
	}
}

// probeLoop joins the cluster and keeps netsonde_kube_up true to the
// state. It starts at once: while the API server cannot be reached (a
// control plane still coming up, a node whose route to it is broken) the
// agent counts without pod names, and joins when it answers, without a
// restart. Reflector errors alone cannot tell the state: a reflector whose
// watch is refused retries inside its watch loop without reporting it. So
// the agent lists pods (a list that matches none, from the API server's
// watch cache, which indexes pods by node; see probe) and one node every
// Probe while all is well, and with backoff (1 s up to 5 s, with jitter) once it is
// not, which is also how soon recovery is seen.
func (r *Resolver) probeLoop(ctx context.Context) {
	var wait time.Duration
	first := true
	// pending are informers started but not synced within 30 s: an API
	// server busy with every agent of a fleet listing at once (a
	// DaemonSet update, the end of an outage). They go on listing, and
	// the next attempt waits for them again rather than starting over:
	// 100 agents joining a 500-node cluster together, restarting their
	// lists each time, read 1.6 node lists each and took 105 s
	// (hack/bench/kubescale). They are dropped when the API server
	// cannot be reached or refuses, for fresh ones once it answers.
	var pending *informers
	defer func() {
		if pending != nil {
			pending.stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-r.syncLost:
		}
		err := r.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		was := r.up.Load()
		if err == nil && !was {
			// The reflectors retry on their own, but their backoff
			// grows to 30 s during an outage and they relist only
			// after it: fresh informers list now, so the index is
			// complete again within a probe interval. The state
			// turns good once they have listed, not before.
			if pending == nil {
				pending, err = r.startInformers(ctx)
			}
			if err == nil {
				err = pending.synced(ctx)
			}
			if err == nil {
				inf := pending
				pending = nil
				if old := r.inf.Swap(inf); old != nil {
					old.stop()
					r.logger.Info("API server reachable again: pod attribution resumes")
				} else {
					r.logger.Info("joined the cluster: pods are named from now on", "node", r.cfg.NodeName)
				}
				r.rebuild()
			}
		}
		if err != nil && pending != nil && !slow(err) && !errors.Is(err, errNotSynced) {
			pending.stop()
			pending = nil
		}
		r.up.Store(err == nil)
		if err == nil && !was && r.inf.Load() != nil {
			select {
			case <-r.joined:
			default:
				close(r.joined)
			}
		}
		switch {
		case err != nil && first:
			r.logger.Warn("cannot reach the API server: running without pod labels or peer nodes, joining when it answers", "err", err)
		case err != nil && was:
			r.logger.Warn("cannot list pods and nodes from the API server: node-level metrics go on, pods created meanwhile are not named until it is back", "err", err)
		}
		if first {
			close(r.tried)
		}
		first = false
		// While the API server is away the probe backs off from 1 s to
		// 5 s: a refused connection costs nothing, and recovery is
		// seen at most 5 s late. The jitter spreads a fleet's agents,
		// which all lost the API server at once, over the interval, so
		// their relists do not reach it in one burst when it is back.
		switch {
		case err == nil:
			wait = r.cfg.Probe
		case was || wait == 0:
			wait = time.Second
		default:
			wait = min(2*wait, 5*time.Second)
		}
		if err != nil {
			wait += rand.N(wait / 4)
		}
	}
}

func (r *Resolver) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A list of pods, which RBAC allows or refuses as any other, that
	// matches no pod: this node's (the watch cache's spec.nodeName index)
	// named noName, which no pod can be. With resourceVersion=0 the watch
	// cache answers it from memory. The list of this node's pods with
	// limit 1 it was before came back in full, the limit ignored at
	// resourceVersion=0: 128 KB for 110 small pods, 4 times a minute;
	// now it is an empty list of 37 bytes. Not a consistent read
	// (resourceVersion ""): kube-apiserver 1.34 serves that from the
	// watch cache only if etcd answers watch progress requests (3.4.31,
	// 3.5.13 and later), and else from etcd, reading every pod of the
	// cluster to filter them (the test kit's etcd 3.4.23:
	// TestProbeReadsLittle).
	pods := metav1.ListOptions{ResourceVersion: "0", FieldSelector: probeSelector(r.cfg.NodeName)}
	if err := r.client.rest.Get().Resource("pods").VersionedParams(&pods, r.client.params).Do(ctx).Into(&corev1.PodList{}); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	// Nodes the same way: the node named noName, none. A list with a
	// metadata.name selector of a cluster-scoped resource is a lookup of
	// that one key in the watch cache. It was a consistent read of one
	// node's metadata, limit 1: an etcd request every probe of every
	// agent (for the node, or, where the watch cache serves consistent
	// reads, for etcd's current revision), and the node's managed fields
	// in the answer (about 2 KB for a kubelet's Node).
	nodes := metav1.ListOptions{ResourceVersion: "0", FieldSelector: fields.OneTermEqualSelector("metadata.name", noName).String()}
	if _, err := r.client.meta.Resource(nodesResource).List(ctx, nodes); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	return nil
}

// noName is a pod or node name none can have: names are DNS subdomains,
// without "_".
const noName = "_netsonde-probe"

// probeSelector selects this node's pods named noName: none.
func probeSelector(node string) string {
	return fields.AndSelectors(fields.OneTermEqualSelector("spec.nodeName", node),
		fields.OneTermEqualSelector("metadata.name", noName)).String()
}

// restClient is a REST client for the core/v1 API group and nothing else,
// and a metadata client (PartialObjectMetadata) for the node names, on
// the same connection.
// kubernetes.NewForConfig, and even the typed core/v1 client, register
// every API group of k8s.io/api in their scheme (and link their apply
// configurations and OpenAPI models): about half of the agent's binary, for
// two resources. A scheme with core/v1 alone decodes pods and nodes.
type restClient struct {
	rest   rest.Interface
	params runtime.ParameterCodec
	meta   metadata.Interface
}

func coreClient(rc *rest.Config) (*restClient, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("core/v1 scheme: %w", err)
	}
	rc = rest.CopyConfig(rc)
	rc.APIPath = "/api"
	rc.GroupVersion = &corev1.SchemeGroupVersion
	rc.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	// Protobuf: smaller on the wire and cheaper to decode than JSON, for
	// the initial list of every node of the cluster in particular.
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	if rc.UserAgent == "" {
		rc.UserAgent = "netsonde"
	}
	h, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	c, err := rest.RESTClientForConfigAndClient(rc, h)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	m, err := metadata.NewForConfigAndClient(rc, h)
	if err != nil {
		return nil, fmt.Errorf("kubernetes metadata client: %w", err)
	}
	return &restClient{rest: c, params: runtime.NewParameterCodec(scheme), meta: m}, nil
}

// listWatch lists and watches one cluster-scoped or all-namespace resource,
// restricted by a field selector if one is given.
func (c *restClient) listWatch(resource string, list runtime.Object, fieldSelector string) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fieldSelector
			out := list.DeepCopyObject()
			if err := c.rest.Get().Resource(resource).VersionedParams(&o, c.params).Do(ctx).Into(out); err != nil {
				return nil, fmt.Errorf("list %s: %w", resource, err)
			}
			return out, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fieldSelector
			o.Watch = true
			w, err := c.rest.Get().Resource(resource).VersionedParams(&o, c.params).Watch(ctx)
			if err != nil {
				return nil, fmt.Errorf("watch %s: %w", resource, err)
			}
			return w, nil
		},
	}
}

// slimPod keeps what rebuild and the informer's store use: the key
// (namespace, name), the age that orders the MaxPods cap, deletion, host
// network and the addresses.
func slimPod(o any) (any, error) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return o, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}, nil
}

// CheckKubeconfig tells whether a kubeconfig file can be used, so a bad
// --kubeconfig stops the agent at start with a message naming it.
func CheckKubeconfig(path string) error {
	_, err := restConfig(path)
	return err
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, ErrNoCluster
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	return rc, nil
}

func (r *Resolver) markDirty() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// loop rebuilds the maps after pod events (at most once a second: a burst
// of pod churn is one rebuild) and every Refresh, since a pod's namespace
// appears a moment after the pod object says it is running.
func (r *Resolver) loop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.dirty:
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		case <-t.C:
		}
		r.rebuild()
	}
}

// rebuild recomputes the index from the informers' caches.
func (r *Resolver) rebuild() {
	inf := r.inf.Load()
	if inf == nil {
		return // not joined yet: nothing is known
	}
	var pods []*corev1.Pod
	for _, o := range inf.pods.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok && !p.Spec.HostNetwork && p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	// The cap keeps the oldest pods named: a burst of new pods cannot
	// push out the labels of the ones already on dashboards.
	sort.Slice(pods, func(i, j int) bool {
		return pods[i].CreationTimestamp.Before(&pods[j].CreationTimestamp)
	})
	byIP := map[netip.Addr]cluster.Pod{}
	for i, p := range pods {
		name := cluster.Pod{Namespace: p.Namespace, Name: p.Name}
		if i >= r.cfg.MaxPods {
			name = cluster.Pod{Name: OverflowPod}
		}
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				byIP[a.Unmap()] = name
			}
		}
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			byIP[a.Unmap()] = name
		}
	}
	peers, nodes := inf.nodes.chosenPeers(), inf.nodes.count()
	r.mu.Lock()
	samePeers := slices.Equal(r.peers, peers)
	changed := !maps.Equal(r.byIP, byIP) || !samePeers
	if samePeers {
		// The slice handed out stays the same one while the nodes do:
		// the probers compare it and choose again only on a change.
		peers = r.peers
	}
	r.byIP, r.peers, r.nodes, r.podCount = byIP, peers, nodes, len(pods)
	r.mu.Unlock()
	// The periodic rebuild mostly finds nothing new: the host network
	// view is asked to join again only when there is something to join.
	if changed && r.cfg.Changed != nil {
		r.cfg.Changed()
	}
}

// OverlayAnnotation names a node's overlay address explicitly, for CNIs
// whose gateway is not the first address of spec.podCIDR.
const OverlayAnnotation = "netsonde.io/overlay-ip"

// overlayIP is the address through which a node is reached over the pod
// network: the annotation, else the first address of its podCIDR.
func overlayIP(n *corev1.Node) netip.Addr {
	if v, ok := n.Annotations[OverlayAnnotation]; ok {
		if a, err := netip.ParseAddr(v); err == nil {
			return a
		}
	}
	if p, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil {
		return p.Masked().Addr().Next()
	}
	return netip.Addr{}
}

var (
	podsDesc = prometheus.NewDesc("netsonde_kube_pods",
		"Pods on this node known to the agent (hostNetwork pods excluded).", nil, nil)
	attributedDesc = prometheus.NewDesc("netsonde_kube_pods_attributed",
		"Pods whose network namespace the agent has found on this node.", nil, nil)
	peersDesc = prometheus.NewDesc("netsonde_kube_peer_nodes",
		"Other nodes of the cluster, among which the mesh and the path-MTU probe choose their peers.", nil, nil)
	podsOverflowDesc = prometheus.NewDesc("netsonde_kube_pods_overflow",
		"Pods beyond --kube.max-pods, whose series carry pod=\"_overflow\" instead of their name (the index keeps the oldest pods named).", nil, nil)
	upDesc = prometheus.NewDesc("netsonde_kube_up",
		"Whether the agent's informers have synced and the API server answers its lists of pods and nodes (1), or not (0): then pods created meanwhile have empty pod labels, and before the first sync no pod is named and there are no peer nodes.", nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Resolver) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- attributedDesc
	ch <- peersDesc
	ch <- upDesc
	ch <- podsOverflowDesc
}

// Collect implements prometheus.Collector: the resolver's own state, so an
// operator can see it found the pods it should.
func (r *Resolver) Collect(ch chan<- prometheus.Metric) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(r.podCount))
	if r.cfg.Attributed != nil {
		ch <- prometheus.MustNewConstMetric(attributedDesc, prometheus.GaugeValue, float64(r.cfg.Attributed()))
	}
	ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(r.nodes))
	ch <- prometheus.MustNewConstMetric(podsOverflowDesc, prometheus.GaugeValue, float64(max(0, r.podCount-r.cfg.MaxPods)))
	up := 0.0
	if r.up.Load() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up)
}

// ByIP implements hostnet.PodIndex.
func (r *Resolver) ByIP(addr netip.Addr) (cluster.Pod, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.byIP[addr.Unmap()]
	return p, ok
}

// PeerNodes implements hostnet.PodIndex: the top-ranked nodes the node
// store has read, at least k of them once it has read them. A k larger
// than any asked before has the store choose and read more now; the
// prober has them in a later round. The slice is shared: rebuild
// replaces it, never changes it in place (cluster.Resolver).
func (r *Resolver) PeerNodes(k int) []cluster.Node {
	for {
		w := r.want.Load()
		if int64(k) <= w {
			break
		}
		if r.want.CompareAndSwap(w, int64(k)) {
			if inf := r.inf.Load(); inf != nil {
				go inf.nodes.choose()
			}
			break
		}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.peers
}

// PeerCount is the number of other nodes (netsonde_kube_peer_nodes).
func (r *Resolver) PeerCount() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.nodes
}
