package kube_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
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

// probeGate counts the agent's lists of pods (not its watches) and the
// bytes of their bodies. hold stops new requests and waits for those in
// flight, so the counts and the API server's metrics are read at the
// same point, exactly.
type probeGate struct {
	rt    http.RoundTripper
	mu    sync.RWMutex
	lists atomic.Int64
	bytes atomic.Int64
}

type gateBody struct {
	io.ReadCloser
	g    *probeGate
	once sync.Once
}

func (b *gateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.g.bytes.Add(int64(n))
	return n, err
}

func (b *gateBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.g.mu.RUnlock)
	return err
}

func (g *probeGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path != "/api/v1/pods" || req.URL.Query().Get("watch") == "true" {
		return g.rt.RoundTrip(req)
	}
	g.mu.RLock()
	resp, err := g.rt.RoundTrip(req)
	if err != nil {
		g.mu.RUnlock()
		return resp, err
	}
	g.lists.Add(1)
	resp.Body = &gateBody{ReadCloser: resp.Body, g: g}
	return resp, nil
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

// The agent's health probe lists pods every Probe to prove the API server
// answers and lets it list them. With 110 pods on its node (and 1,000 on
// another) each probe's answer must be a few bytes, not the node's pods
// (the watch cache ignores the limit of a resourceVersion=0 list: the
// probe read 128 KB each time, 4 times a minute per agent), and the
// API server must answer it from its watch cache (apiserver_cache_list_total
// by the spec.nodeName index, once per probe), not by reading the
// cluster's pods from etcd (apiserver_storage_list_total unchanged),
// which a consistent read with a field selector does.
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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := kube.Start(ctx, kube.Config{Kubeconfig: k.Kubeconfig, NodeName: "node-a", Probe: 100 * time.Millisecond,
		TuneREST: func(rc *rest.Config) {
			// The API server listens in the test's namespace.
			rc.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := node.Do(func() (err error) {
					c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			}
			rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { gate.rt = rt; return gate }
		}},
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Joined():
	case <-time.After(60 * time.Second):
		t.Fatal("not joined in 60 s")
	}
	testenv.Eventually(t, 10*time.Second, "the node's 110 pods known", func() bool {
		return gauge(t, r, "netsonde_kube_pods") == onNode
	})

	// What the API server counted, and the agent sent and read, at the
	// same moment.
	client := node.HTTPClient()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	metric := func(body, series string) float64 {
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, series+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", l, err)
				}
				return f
			}
		}
		return 0 // not counted yet
	}
	type snap struct{ lists, bytes, cached, stored float64 }
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
		return snap{lists: float64(gate.lists.Load()), bytes: float64(gate.bytes.Load()),
			cached: metric(string(body), `apiserver_cache_list_total{group="",index="f:spec.nodeName",resource="pods"}`),
			stored: metric(string(body), `apiserver_storage_list_total{group="",resource="pods"}`)}
	}
	before := read()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d probes", probes), func() bool {
		return float64(gate.lists.Load())-before.lists >= probes
	})
	after := read()
	lists := after.lists - before.lists
	perProbe := (after.bytes - before.bytes) / lists
	t.Logf("%.0f probes: %.0f bytes each (body); API server: %.0f lists from the watch cache by spec.nodeName, %.0f from etcd",
		lists, perProbe, after.cached-before.cached, after.stored-before.stored)
	if perProbe >= 1024 {
		t.Errorf("a probe's list of pods read %.0f bytes with %d pods on the node, want under 1 KiB", perProbe, onNode)
	}
	if got := after.cached - before.cached; got != lists {
		t.Errorf("the API server answered %.0f lists of pods from its watch cache by spec.nodeName during %.0f probes, want %.0f", got, lists, lists)
	}
	if got := after.stored - before.stored; got != 0 {
		t.Errorf("the API server listed pods from etcd %.0f times during %.0f probes, want 0", got, lists)
	}
	if v := gauge(t, r, "netsonde_kube_up"); v != 1 {
		t.Errorf("netsonde_kube_up %v", v)
	}
}
