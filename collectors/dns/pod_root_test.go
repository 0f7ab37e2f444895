package dns_test

import (
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestPodAttributionAgainstRealAPIServer: the agent, on node-a with a real
// kube-apiserver, attributes a pod's DNS queries to namespace shop, pod
// web, through the socket's network namespace and the pod index the
// drops collector uses. The node's namespace holds the resolver; the
// agent counts every socket of the machine (no --dns.only-netns), so the
// pod's label set is what isolates the test's counts.
func TestPodAttributionAgainstRealAPIServer(t *testing.T) {
	node, pod := testenv.NewNetns(t), testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	k.CreatePod(t, "shop", "web", "node-a", "198.18.102.2")
	testenv.Veth(t, node, pod, "vweb", "eth0", "198.18.102.1/24", "198.18.102.2/24", 0)
	srv := "198.18.102.1:53"
	startServer(t, node, srv)
	a := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--collector.dns", "--dns.timeout=1s")
	testenv.Eventually(t, 15*time.Second, "pod shop/web found in its namespace", func() bool {
		found, _ := a.Scrape(t).Value("netsonde_kube_pods_attributed", nil)
		return found == 1
	})
	web := map[string]string{"namespace": "shop", "pod": "web"}
	exchanges(t, pod, srv, "ok", 6, 2*time.Second, 0)
	exchanges(t, pod, srv, "nx", 2, 2*time.Second, 3)
	exchanges(t, pod, srv, "drop", 1, 0, -1)
	a.WaitSum(t, queriesMetric, web, 9)
	a.WaitSum(t, responsesMetric, with(web, "rcode", "NOERROR"), 6)
	a.WaitSum(t, responsesMetric, with(web, "rcode", "NXDOMAIN"), 2)
	a.WaitSum(t, timeoutsMetric, web, 1)
}
