// Command kubescale measures what netsonde's agents cost the control plane,
// against the real kube-apiserver and etcd of the test kit
// (internal/testenv): a cluster of kubelet-sized Node objects and pods,
// and N agents' kube clients (agent/kube, the agent's own informer code,
// without the BPF side) in one process, each with its node name, its own
// connection and its own watches. For each cluster size it prints the
// per-agent Go heap, the API server's watches and CPU, each agent's bytes
// read at start and per minute of steady state (with the kubelets' node
// status updates going on), of those the health probe's lists, and the
// time from a new pod's address to the agent naming it. Prints a markdown table for BENCHMARKS.md.
//
//	go run ./hack/bench/kubescale -nodes 500,1000,5000 -agents 100
//
// The sizes grow one cluster: the nodes of the first size are kept for the
// next. Pods: 110 on each agent's node (a full node), and -pods-per-node
// on average over the cluster (10: 50,000 pods at 5,000 nodes), the rest
// spread over the other nodes. Needs root, etcd, openssl and kubectl (make
// deps) and the cached kube-apiserver (hack/kube-apiserver.sh).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/netsonde/netsonde/agent/kube"
	"github.com/netsonde/netsonde/internal/testenv"
)

// result is what the child (the agents' process) reports for one size.
type result struct {
	Nodes, Agents, Pods int
	// HeapPerAgent is the live Go heap the agents added, per agent, after
	// a GC (bytes); RSSPerAgent the same of the process's RSS.
	HeapPerAgent, RSSPerAgent float64
	// JoinSeconds is how long until every agent had joined (all started
	// at once, as after a DaemonSet update or a control-plane outage).
	JoinSeconds float64
	// StartBytes is what one agent read on the wire (TLS included) from
	// its start until joined; StartByResource the response bodies
	// (decoded, before compression) by list and watch of each resource.
	StartBytes      float64
	StartByResource map[string]float64
	// MinuteBytes is what one agent reads on the wire per minute of
	// steady state, and MinuteByResource its bodies by resource.
	MinuteBytes      float64
	MinuteByResource map[string]float64
	// NodeUpdatesPerSec is the node status update rate during the steady
	// window (every node once per -node-status-period, as kubelets do).
	NodeUpdatesPerSec float64
	// Watches are the API server's open WATCH requests by resource.
	Watches map[string]float64
	// APICPUJoin is the API server's CPU seconds over the join;
	// APICPUPerMin its CPU seconds per minute of steady state.
	APICPUJoin, APICPUPerMin float64
	APIRSSMiB                float64
	// Attribute are the times from a new pod's status (its address)
	// being written to its agent naming it, in seconds.
	Attribute []float64
}

func main() {
	var (
		sizes      = flag.String("nodes", "500,1000", "cluster sizes (Node objects), ascending, comma-separated")
		agents     = flag.Int("agents", 100, "agents (kube clients) simulated")
		podsPer    = flag.Int("pods-per-node", 10, "pods per node on average over the cluster (at least 110 on each agent's node)")
		steady     = flag.Duration("steady", time.Minute, "steady-state window measured")
		statusEach = flag.Duration("node-status-period", 5*time.Minute, "each node's status is updated once per this period during the steady window (the kubelet's nodeStatusReportFrequency)")
		samples    = flag.Int("attribute", 10, "new pods whose attribution is timed")
		child      = flag.String("child", "", "internal: run the agents (JSON config)")
	)
	flag.Parse()
	if *child != "" {
		runChild(*child)
		return
	}
	t := &tb{}
	defer t.cleanup()
	// Interrupted, it still removes its namespace, etcd and API server.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		t.cleanup()
		os.Exit(1)
	}()
	defer func() {
		if r := recover(); r != nil && r != errFatal {
			panic(r)
		}
	}()
	ns := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, ns)
	client := ns.HTTPClient()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	client.Transport.(*http.Transport).DisableKeepAlives = false
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	api := &apiClient{server: k.Server, token: k.Token, http: client}
	check := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	check(api.do("POST", "/api/v1/namespaces", []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench"}}`), http.StatusCreated))

	var rows []result
	nodes, pods := 0, 0
	podsOn := make([]int, 0) // pods per node so far
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < *agents {
			t.Fatalf("size %q: want a number of nodes of at least -agents", f)
		}
		begin := time.Now()
		var batch [][]byte
		for ; nodes < n; nodes++ {
			batch = append(batch, testenv.KubeletNode(nodeName(nodes), nodeIP(nodes), podCIDR(nodes)))
			podsOn = append(podsOn, 0)
		}
		k.CreateNodes(t, batch)
		// Pods: full agents' nodes first, then the others round-robin.
		var newPods []podRef
		for i := 0; i < *agents; i++ {
			for ; podsOn[i] < 110; podsOn[i]++ {
				newPods = append(newPods, podRef{node: i, idx: podsOn[i], ip: true})
			}
		}
		total := max(*podsPer*n, 110**agents)
		for i := *agents; pods+len(newPods) < total; i++ {
			j := *agents + (i-*agents)%(n-*agents)
			newPods = append(newPods, podRef{node: j, idx: podsOn[j]})
			podsOn[j]++
		}
		check(api.createPods(newPods))
		pods += len(newPods)
		log.Printf("%d nodes, %d pods in the cluster (created in %v)", nodes, pods, time.Since(begin).Round(time.Second))

		cfg, _ := json.Marshal(childConfig{Kubeconfig: k.Kubeconfig, Server: k.Server, Token: k.Token, Nodes: n, Pods: pods,
			Agents: *agents, Steady: *steady, StatusPeriod: *statusEach, Samples: min(*samples, 10), Round: len(rows)})
		self, err := os.Executable()
		check(err)
		cmd := exec.Command("ip", "netns", "exec", ns.Name, self, "-child", string(cfg))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("agents at %d nodes: %v", n, err)
		}
		var r result
		check(json.Unmarshal(out, &r))
		log.Printf("%d nodes: %s", n, out)
		rows = append(rows, r)
		printTable(rows)
	}
}

type childConfig struct {
	Kubeconfig, Server, Token string
	Nodes, Pods, Agents       int
	Steady, StatusPeriod      time.Duration
	Samples, Round            int
}

func printTable(rows []result) {
	mib := func(b float64) string { return fmt.Sprintf("%.2f MiB", b/(1<<20)) }
	kib := func(b float64) string { return fmt.Sprintf("%.0f KiB", b/1024) }
	fmt.Printf("\n%s UTC, %d agents, GOMAXPROCS %d\n\n", time.Now().UTC().Format("2006-01-02 15:04"), rows[0].Agents, runtime.GOMAXPROCS(0))
	fmt.Println("| nodes | pods | heap per agent | RSS per agent | all joined in | API server watches (pods / nodes) | API server CPU: join / per min steady | API server RSS | per agent at start: on the wire (node list, node GETs, pod list decoded) | per agent per min steady: on the wire (node watch, node GETs decoded) | node status updates/s | new pod attributed in (median / max) | per agent per min steady: the health probe's lists of pods / of nodes (decoded) |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		sort.Float64s(r.Attribute)
		med, mx := 0.0, 0.0
		if len(r.Attribute) > 0 {
			med, mx = r.Attribute[len(r.Attribute)/2], r.Attribute[len(r.Attribute)-1]
		}
		fmt.Printf("| %d | %d | %s | %s | %.1f s | %.0f / %.0f | %.1f s / %.1f s | %.0f MiB | %s (%s, %s, %s) | %s (%s, %s) | %.1f | %.2f s / %.2f s | %.0f B / %.0f B |\n",
			r.Nodes, r.Pods, mib(r.HeapPerAgent), mib(r.RSSPerAgent), r.JoinSeconds, r.Watches["pods"], r.Watches["nodes"],
			r.APICPUJoin, r.APICPUPerMin, r.APIRSSMiB,
			kib(r.StartBytes), kib(r.StartByResource["list nodes"]), kib(r.StartByResource["get nodes"]), kib(r.StartByResource["list pods"]),
			kib(r.MinuteBytes), kib(r.MinuteByResource["watch nodes"]), kib(r.MinuteByResource["get nodes"]), r.NodeUpdatesPerSec, med, mx,
			r.MinuteByResource["list pods"], r.MinuteByResource["list nodes"])
	}
}

func nodeName(i int) string { return fmt.Sprintf("node-%05d", i) }

// nodeIP is node i's InternalIP in 198.19.0.0/16 (the test range); no
// packet is sent to it.
func nodeIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(i%250 + 1)})
}

func podCIDR(i int) string { return fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256) }

// podIP is the address of pod j on node i, in the node's podCIDR.
func podIP(i, j int) string { return fmt.Sprintf("10.%d.%d.%d", 64+i/256, i%256, j+2) }

type podRef struct {
	node, idx int
	ip        bool // written to its status, as the kubelet does once it runs
}

// podJSON is a Deployment's pod as the API server stores it after
// admission, about 2.5 KB: labels, an owner, one container with
// resources, probes, environment and mounts.
func podJSON(node, idx int) []byte {
	name := fmt.Sprintf("app-%05d-%03d", node, idx)
	return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":"bench",
"labels":{"app.kubernetes.io/name":"payments","app.kubernetes.io/instance":"payments-%d","pod-template-hash":"7d9f8c6b5d","team":"platform"},
"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-01T10:00:00Z","prometheus.io/scrape":"true","prometheus.io/port":"8080"},
"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"payments-%d-7d9f8c6b5d","uid":"3f1b2c4d-0000-4000-8000-%012d","controller":true,"blockOwnerDeletion":true}]},
"spec":{"nodeName":%q,"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst",
"containers":[{"name":"app","image":"123456789012.dkr.ecr.eu-west-1.amazonaws.com/platform-team-01/payments-service:v1.42.7",
"ports":[{"name":"http","containerPort":8080,"protocol":"TCP"}],
"env":[{"name":"LOG_LEVEL","value":"info"},{"name":"DB_HOST","value":"payments-db.bench.svc.cluster.local"},{"name":"POD_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"memory":"256Mi"}},
"readinessProbe":{"httpGet":{"path":"/healthz","port":8080},"periodSeconds":10},
"livenessProbe":{"httpGet":{"path":"/livez","port":8080},"periodSeconds":20},
"volumeMounts":[{"name":"config","mountPath":"/etc/app"}]}],
"volumes":[{"name":"config","configMap":{"name":"payments-config"}}]}}`, name, idx%20, idx%20, node*1000+idx, nodeName(node))
}

func podStatus(node, idx int) []byte {
	ip := podIP(node, idx)
	return fmt.Appendf(nil, `{"status":{"phase":"Running","podIP":%q,"podIPs":[{"ip":%q}],"hostIP":%q}}`, ip, ip, nodeIP(node))
}

type apiClient struct {
	server, token string
	http          *http.Client
}

func (a *apiClient) do(method, path string, body []byte, want int) error {
	req, err := http.NewRequest(method, a.server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	switch method {
	case "PATCH":
		req.Header.Set("Content-Type", "application/strategic-merge-patch+json")
	default:
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %.300s", method, path, resp.StatusCode, b)
	}
	return nil
}

func (a *apiClient) createPod(p podRef) error {
	if err := a.do("POST", "/api/v1/namespaces/bench/pods", podJSON(p.node, p.idx), http.StatusCreated); err != nil {
		return err
	}
	if !p.ip {
		return nil
	}
	return a.do("PATCH", fmt.Sprintf("/api/v1/namespaces/bench/pods/app-%05d-%03d/status", p.node, p.idx), podStatus(p.node, p.idx), http.StatusOK)
}

// createPods creates the pods 16 requests in flight.
func (a *apiClient) createPods(pods []podRef) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pods) {
					return
				}
				if err := a.createPod(pods[i]); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// counter counts one agent's bytes: on the wire (its connections' reads,
// TLS included) and response bodies by request kind.
type counter struct {
	wire atomic.Int64
	mu   sync.Mutex
	body map[string]int64
}

func (c *counter) add(kind string, n int) {
	c.mu.Lock()
	c.body[kind] += int64(n)
	c.mu.Unlock()
}

func (c *counter) snapshot() (int64, map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int64, len(c.body))
	for k, v := range c.body {
		m[k] = v
	}
	return c.wire.Load(), m
}

type countConn struct {
	net.Conn
	c *counter
}

func (c countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.c.wire.Add(int64(n))
	return n, err
}

type countBody struct {
	io.ReadCloser
	c    *counter
	kind string
}

func (b countBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.add(b.kind, n)
	return n, err
}

type countRT struct {
	rt http.RoundTripper
	c  *counter
}

func (t countRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	verb := "list"
	if req.URL.Query().Get("watch") == "true" {
		verb = "watch"
	}
	res := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
	if rest, ok := strings.CutPrefix(req.URL.Path, "/api/v1/nodes/"); ok && !strings.Contains(rest, "/") {
		verb, res = "get", "nodes" // one node, by name
	}
	resp.Body = countBody{ReadCloser: resp.Body, c: t.c, kind: verb + " " + res}
	return resp, nil
}

// tune gives an agent its own connection (a Dial of its own keeps
// client-go from sharing one transport between clients of the same
// config) and counts its bytes.
func (c *counter) tune(rc *rest.Config) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	rc.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countConn{Conn: conn, c: c}, nil
	}
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countRT{rt: rt, c: c} }
	// A node's agent has its own client-side rate limit; so many in one
	// process must not share a budget they would not share.
	rc.QPS, rc.Burst = 5, 10
}

// runChild runs inside the API server's namespace: the agents, and the
// measurements.
func runChild(js string) {
	var cfg childConfig
	must(json.Unmarshal([]byte(js), &cfg))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	api := &apiClient{server: cfg.Server, token: cfg.Token, http: client}
	apiPID := findAPIServer()

	heap0, rss0 := heapNow(), rssNow()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counters := make([]*counter, cfg.Agents)
	resolvers := make([]*kube.Resolver, cfg.Agents)
	cpu0 := cpuSeconds(apiPID)
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range cfg.Agents {
		counters[i] = &counter{body: map[string]int64{}}
		wg.Go(func() {
			r, err := kube.Start(ctx, kube.Config{Kubeconfig: cfg.Kubeconfig, NodeName: nodeName(i), TuneREST: counters[i].tune}, logger)
			if err != nil {
				log.Fatalf("agent %d: %v", i, err)
			}
			select {
			case <-r.Joined():
			case <-time.After(10 * time.Minute):
				log.Fatalf("agent %d did not join in 10 minutes", i)
			}
			resolvers[i] = r
		})
	}
	wg.Wait()
	res := result{Nodes: cfg.Nodes, Agents: cfg.Agents, Pods: cfg.Pods, JoinSeconds: time.Since(begin).Seconds()}
	res.APICPUJoin = cpuSeconds(apiPID) - cpu0
	// Every agent has its peers and its 110 pods.
	for i, r := range resolvers {
		deadline := time.Now().Add(2 * time.Minute)
		// The mesh's and the path-MTU probe's 16 each.
		for r.PeerCount() != cfg.Nodes-1 || len(r.PeerNodes(16)) < 16 || !hasPod(r, i, 109) {
			if time.Now().After(deadline) {
				log.Fatalf("agent %d: %d peers (want %d), %d chosen (want 16), pod 109 named: %v", i, r.PeerCount(), cfg.Nodes-1, len(r.PeerNodes(16)), hasPod(r, i, 109))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var startWire float64
	start := map[string]float64{}
	for _, c := range counters {
		w, m := c.snapshot()
		startWire += float64(w)
		for k, v := range m {
			start[k] += float64(v)
		}
	}
	res.StartBytes = startWire / float64(cfg.Agents)
	res.StartByResource = perAgent(start, cfg.Agents)
	log.Printf("%d agents joined in %.1f s", cfg.Agents, res.JoinSeconds)

	// Steady state: the kubelets update their nodes' status, each once per
	// StatusPeriod (a heartbeat of the Ready condition), spread evenly.
	stop := make(chan struct{})
	var updates atomic.Int64
	var churn sync.WaitGroup
	churn.Go(func() {
		every := cfg.StatusPeriod / time.Duration(cfg.Nodes)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			go func(n int) {
				now := time.Now().UTC().Format(time.RFC3339)
				body := fmt.Appendf(nil, `{"status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":%q,"reason":"KubeletReady","message":"kubelet is posting ready status"}]}}`, now)
				if err := api.do("PATCH", "/api/v1/nodes/"+nodeName(n)+"/status", body, http.StatusOK); err != nil {
					log.Printf("node status: %v", err)
					return
				}
				updates.Add(1)
			}(i % cfg.Nodes)
		}
	})
	wire0, body0 := sumCounters(counters)
	cpu1 := cpuSeconds(apiPID)
	t0 := time.Now()
	time.Sleep(cfg.Steady)
	minutes := time.Since(t0).Minutes()
	wire1, body1 := sumCounters(counters)
	res.APICPUPerMin = (cpuSeconds(apiPID) - cpu1) / minutes
	close(stop)
	churn.Wait()
	res.NodeUpdatesPerSec = float64(updates.Load()) / (minutes * 60)
	res.MinuteBytes = float64(wire1-wire0) / minutes / float64(cfg.Agents)
	minute := map[string]float64{}
	for k, v := range body1 {
		minute[k] = float64(v-body0[k]) / minutes
	}
	res.MinuteByResource = perAgent(minute, cfg.Agents)
	res.Watches = watches(api)
	res.APIRSSMiB = apiRSS(apiPID)

	runtime.GC()
	debug.FreeOSMemory()
	res.HeapPerAgent = float64(heapNow()-heap0) / float64(cfg.Agents)
	res.RSSPerAgent = float64(rssNow()-rss0) / float64(cfg.Agents)

	// A new pod on an agent's node: from its address being written to
	// the agent naming it.
	for s := range cfg.Samples {
		i := s * cfg.Agents / max(cfg.Samples, 1)
		p := podRef{node: i, idx: 110 + 10*cfg.Round + s}
		must(api.do("POST", "/api/v1/namespaces/bench/pods", podJSON(p.node, p.idx), http.StatusCreated))
		t := time.Now()
		must(api.do("PATCH", fmt.Sprintf("/api/v1/namespaces/bench/pods/app-%05d-%03d/status", p.node, p.idx), podStatus(p.node, p.idx), http.StatusOK))
		addr := netip.MustParseAddr(podIP(p.node, p.idx))
		for {
			if _, ok := resolvers[i].ByIP(addr); ok {
				break
			}
			if time.Since(t) > time.Minute {
				log.Fatalf("agent %d did not name %v in a minute", i, addr)
			}
			time.Sleep(5 * time.Millisecond)
		}
		res.Attribute = append(res.Attribute, time.Since(t).Seconds())
		// Leave the cluster as it was for the next size.
		must(api.do("DELETE", fmt.Sprintf("/api/v1/namespaces/bench/pods/app-%05d-%03d?gracePeriodSeconds=0", p.node, p.idx), nil, http.StatusOK))
	}
	must(json.NewEncoder(os.Stdout).Encode(res))
}

func hasPod(r *kube.Resolver, node, idx int) bool {
	_, ok := r.ByIP(netip.MustParseAddr(podIP(node, idx)))
	return ok
}

func sumCounters(cs []*counter) (int64, map[string]int64) {
	var wire int64
	body := map[string]int64{}
	for _, c := range cs {
		w, m := c.snapshot()
		wire += w
		for k, v := range m {
			body[k] += v
		}
	}
	return wire, body
}

func perAgent(m map[string]float64, n int) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = v / float64(n)
	}
	return out
}

// watches reads the API server's open WATCH requests by resource.
func watches(api *apiClient) map[string]float64 {
	req, _ := http.NewRequest("GET", api.server+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+api.token)
	resp, err := api.http.Do(req)
	must(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(err)
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "apiserver_longrunning_requests{") || !strings.Contains(l, `verb="WATCH"`) {
			continue
		}
		i := strings.Index(l, `resource="`)
		if i < 0 {
			continue
		}
		res := l[i+len(`resource="`):]
		res, _, _ = strings.Cut(res, `"`)
		v, err := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
		if err == nil {
			out[res] += v
		}
	}
	return out
}

func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func rssNow() uint64 {
	return statusKiB(os.Getpid(), "VmRSS") * 1024
}

func apiRSS(pid int) float64 { return float64(statusKiB(pid, "VmRSS")) / 1024 }

func statusKiB(pid int, field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			must(err)
			return n
		}
	}
	log.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// findAPIServer is the kube-apiserver in this process's network namespace.
func findAPIServer() int {
	self, err := os.Readlink("/proc/self/ns/net")
	must(err)
	ents, err := os.ReadDir("/proc")
	must(err)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if !strings.HasPrefix(string(comm), "kube-apiserver") {
			continue
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns == self {
			return pid
		}
	}
	log.Fatal("no kube-apiserver in this network namespace")
	return 0
}

// cpuSeconds is a process's user+system CPU time (/proc/PID/stat, in
// clock ticks of 1/100 s).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// tb lets the test kit run in a program: failures end it after the
// cleanups (the namespace, etcd and kube-apiserver) have run.
type tb struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

var errFatal = fmt.Errorf("fatal")

func (t *tb) Helper()                 {}
func (t *tb) Name() string            { return "kubescale" }
func (t *tb) Logf(f string, a ...any) { log.Printf(f, a...) }
func (t *tb) Log(a ...any)            { log.Print(a...) }
func (t *tb) Errorf(f string, a ...any) {
	t.failed = true
	log.Printf(f, a...)
}
func (t *tb) Error(a ...any) { t.failed = true; log.Print(a...) }
func (t *tb) Fatalf(f string, a ...any) {
	t.failed = true
	log.Printf(f, a...)
	panic(errFatal)
}
func (t *tb) Fatal(a ...any)           { t.Fatalf("%s", fmt.Sprint(a...)) }
func (t *tb) Skipf(f string, a ...any) { t.Fatalf(f, a...) }
func (t *tb) Skip(a ...any)            { t.Fatal(a...) }
func (t *tb) Failed() bool             { return t.failed }
func (t *tb) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}
func (t *tb) TempDir() string {
	d, err := os.MkdirTemp("", "kubescale-")
	must(err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
func (t *tb) cleanup() {
	t.mu.Lock()
	c := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}
