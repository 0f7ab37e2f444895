package kube_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/netsonde/netsonde/agent/kube"
	"github.com/netsonde/netsonde/internal/testenv"
)

// An API server so busy that the node list takes longer than the 30 s the
// agent waits for its informers (a fleet's agents all listing at once,
// after a DaemonSet update or an outage): the agent keeps that list going
// and joins when it ends, instead of cancelling it and listing again,
// which only adds to the load that made it slow. A proxy in front of the
// real kube-apiserver holds the first page of the node list for 40 s and
// counts the requests for it: exactly one, not cancelled, and the agent
// joins with node-b as its peer.
func TestSlowNodeListNotRestarted(t *testing.T) {
	const hold = 40 * time.Second
	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	nodes(t, k)

	target, _ := url.Parse(k.Server)
	proxy := httputil.NewSingleHostReverseProxy(target)
	tr := node.HTTPClient().Transport.(*http.Transport)
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	tr.DisableKeepAlives = false
	proxy.Transport = tr
	proxy.FlushInterval = -1 // watches stream
	var firstPages, cancelled atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		// The node reflector's first page: the probe's list of nodes
		// selects one name.
		if r.URL.Path == "/api/v1/nodes" && q.Get("watch") != "true" && q.Get("fieldSelector") == "" && q.Get("continue") == "" {
			if firstPages.Add(1) == 1 {
				select {
				case <-time.After(hold):
				case <-r.Context().Done():
					cancelled.Add(1)
					return
				}
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	begin := time.Now()
	r, err := kube.Start(ctx, kube.Config{Kubeconfig: k.Kubeconfig, NodeName: "node-a",
		TuneREST: func(rc *rest.Config) { rc.Host = srv.URL }},
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Joined():
	case <-time.After(hold + 40*time.Second):
		t.Fatalf("not joined %v after start", time.Since(begin))
	}
	joined := time.Since(begin)
	testenv.Eventually(t, 5*time.Second, "node-b a peer", func() bool {
		p := r.PeerNodes(16)
		return len(p) == 1 && p[0].Name == "node-b"
	})
	if n, c := firstPages.Load(), cancelled.Load(); n != 1 || c != 0 {
		t.Errorf("first page of the node list asked for %d times, %d of them cancelled; want once, none cancelled", n, c)
	}
	if joined < hold {
		t.Errorf("joined after %v, before the held list was answered (%v)", joined, hold)
	}
	t.Logf("joined %v after start; first node pages asked for: %d, cancelled: %d", joined.Round(time.Second), firstPages.Load(), cancelled.Load())
}
