package kube_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/netsonde/netsonde/agent/kube"
	"github.com/netsonde/netsonde/internal/testenv"
)

// probeGate counts the agent's lists of pods and of nodes (not its
// watches, nor its GETs of single nodes) and the bytes of their bodies.
// Holding mu stops new lists and waits for those in flight, so the counts
// and the API server's metrics are read at the same point, exactly.
type probeGate struct {
	rt    http.RoundTripper
	mu    sync.RWMutex
	lists [2]atomic.Int64 // pods, nodes
	bytes [2]atomic.Int64
}

type gateBody struct {
	io.ReadCloser
	g    *probeGate
	res  int
	once sync.Once
}

func (b *gateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.g.bytes[b.res].Add(int64(n))
	return n, err
}

func (b *gateBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.g.mu.RUnlock)
	return err
}

func (g *probeGate) RoundTrip(req *http.Request) (*http.Response, error) {
	res := slices.Index([]string{"/api/v1/pods", "/api/v1/nodes"}, req.URL.Path)
	if res < 0 || req.URL.Query().Get("watch") == "true" {
		return g.rt.RoundTrip(req)
	}
	g.mu.RLock()
	resp, err := g.rt.RoundTrip(req)
	if err != nil {
		g.mu.RUnlock()
		return resp, err
	}
	g.lists[res].Add(1)
	resp.Body = &gateBody{ReadCloser: resp.Body, g: g, res: res}
	return resp, nil
}

// startJoined starts a resolver in the test process, its client's
// requests passed through wrap, and waits for it to join.
func startJoined(t *testing.T, node *testenv.Netns, cfg kube.Config, wrap func(http.RoundTripper) http.RoundTripper) *kube.Resolver {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg.TuneREST = func(rc *rest.Config) {
		// The API server listens in the test's namespace.
		rc.Dial = node.HTTPClient().Transport.(*http.Transport).DialContext
		rc.WrapTransport = wrap
	}
	r, err := kube.Start(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Joined():
	case <-time.After(60 * time.Second):
		t.Fatal("not joined in 60 s")
	}
	return r
}

// gauge is the value of one of the resolver's gauges.
func gauge(t *testing.T, r *kube.Resolver, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// The agent's health probe lists pods and nodes every Probe to prove the
// API server answers and lets it list them. With 110 pods on its node
// (and 1,000 on another) each probe's answers must be a few bytes, not the
// node's pods (the watch cache ignores the limit of a resourceVersion=0
// list: the probe read 128 KB of pods each time, 4 times a minute per
// agent), and the API server must answer both from its watch cache
// (apiserver_cache_list_total once per probe: pods by the spec.nodeName
// index, nodes by the key of one name), never from etcd
// (apiserver_storage_list_total unchanged): a consistent read of pods
// with a field selector reads every pod of the cluster, and one of a node
// was an etcd request per probe of every agent.
func TestProbeReadsLittle(t *testing.T) {
	const onNode, elsewhere, probes = 110, 1000, 20
	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	nodes(t, k)
	k.Kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "create", "-f", "-")
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for i := range onNode + elsewhere {
		n := "node-a"
		if i >= onNode {
			n = "node-b"
		}
		fmt.Fprintf(&b, "- {apiVersion: v1, kind: Pod, metadata: {name: web-%d, namespace: shop, labels: {app: web, team: platform}}, spec: {nodeName: %s, containers: [{name: web, image: registry.invalid/shop/web:v1.2.3, ports: [{containerPort: 8080}], env: [{name: LOG_LEVEL, value: info}]}]}}\n", i, n)
	}
	k.Kubectl(t, b.String(), "create", "-f", "-")

	gate := &probeGate{}
	r := startJoined(t, node, kube.Config{Kubeconfig: k.Kubeconfig, NodeName: "node-a", Probe: 100 * time.Millisecond},
		func(rt http.RoundTripper) http.RoundTripper { gate.rt = rt; return gate })
	testenv.Eventually(t, 10*time.Second, "the node's 110 pods known", func() bool {
		return gauge(t, r, "netsonde_kube_pods") == onNode
	})

	// What the API server counted, and the agent sent and read, at the
	// same moment.
	client := node.HTTPClient()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	// The API server's list counters, of the watch cache and of etcd.
	type snap struct {
		lists, bytes [2]float64
		metrics      map[string]float64
	}
	read := func() snap {
		gate.mu.Lock()
		defer gate.mu.Unlock()
		req, _ := http.NewRequest("GET", k.Server+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+k.Token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		sn := snap{metrics: map[string]float64{}}
		for i := range sn.lists {
			sn.lists[i], sn.bytes[i] = float64(gate.lists[i].Load()), float64(gate.bytes[i].Load())
		}
		for _, l := range strings.Split(string(body), "\n") {
			if !strings.HasPrefix(l, "apiserver_cache_list_") && !strings.HasPrefix(l, "apiserver_storage_list_") && !strings.HasPrefix(l, "etcd_requests_total") {
				continue
			}
			i := strings.LastIndexByte(l, ' ')
			v, err := strconv.ParseFloat(l[i+1:], 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			sn.metrics[l[:i]] = v
		}
		return sn
	}
	before := read()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d probes", probes), func() bool {
		return float64(gate.lists[0].Load())-before.lists[0] >= probes
	})
	after := read()
	var changed []string
	for k, v := range after.metrics {
		if d := v - before.metrics[k]; d != 0 {
			changed = append(changed, fmt.Sprintf("%s +%.0f", k, d))
		}
	}
	slices.Sort(changed)
	t.Logf("API server during the probes:\n%s", strings.Join(changed, "\n"))
	delta := func(series string) float64 { return after.metrics[series] - before.metrics[series] }
	// Pods by the watch cache's index of them by node, 110 looked at and
	// none returned; nodes by the one key of the name, none looked at.
	for i, w := range []struct{ res, index string }{{"pods", "f:spec.nodeName"}, {"nodes", ""}} {
		lists := after.lists[i] - before.lists[i]
		perProbe := (after.bytes[i] - before.bytes[i]) / lists
		t.Logf("%.0f probes' lists of %s: %.0f bytes each (body)", lists, w.res, perProbe)
		if lists < probes {
			t.Errorf("%.0f lists of %s during %d probes", lists, w.res, probes)
		}
		if perProbe >= 1024 {
			t.Errorf("a probe's list of %s read %.0f bytes with %d pods on the node, want under 1 KiB", w.res, perProbe, onNode)
		}
		if got := delta(`apiserver_cache_list_total{group="",index="` + w.index + `",resource="` + w.res + `"}`); got != lists {
			t.Errorf("the API server answered %.0f lists of %s from its watch cache (index %q) during %.0f probes, want %.0f", got, w.res, w.index, lists, lists)
		}
		if got := delta(`apiserver_storage_list_total{group="",resource="` + w.res + `"}`); got != 0 {
			t.Errorf("the API server listed %s from etcd %.0f times during %.0f probes, want 0", w.res, got, lists)
		}
	}
	if got, want := delta(`apiserver_cache_list_fetched_objects_total{group="",index="",resource="nodes"}`), 0.0; got != want {
		t.Errorf("the watch cache looked at %.0f nodes for the probes' lists of one name, want %.0f (a lookup of the key)", got, want)
	}
	if v := gauge(t, r, "netsonde_kube_up"); v != 1 {
		t.Errorf("netsonde_kube_up %v", v)
	}
}
