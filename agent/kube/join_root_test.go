package kube_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// The control plane comes up after the agent (a node rebooted with its
// API server, a cluster being installed): the agent is ready at once with
// every node-level collector up, says netsonde_kube_up 0, counts 100 drops
// in a pod's namespace without a pod name, and when the API server answers
// 20 s later it names them (the same 100, now pod="web"), without a
// restart, and says netsonde_kube_up 1.
func TestJoinsWhenAPIServerComesLate(t *testing.T) {
	const late = 20 * time.Second
	testenv.RequireCommand(t, "nft")
	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	nodes(t, k)
	k.Kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "create", "-f", "-")
	pod := podNetns(t, node, "vweb", "198.18.96.1", "198.18.96.2")
	pod.Exec(t, "nft", "add table inet t; add chain inet t in { type filter hook input priority 0; }; add rule inet t in udp dport 9999 drop")
	node.Exec(t, "ping", "-c1", "-W2", "198.18.96.2")
	createPod(t, k, "web", "198.18.96.2")
	// The objects are in etcd; the API server goes before the agent comes.
	k.StopAPIServer(t)

	begin := time.Now()
	agent := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--collector.drops", "--collector.mtu")
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("NETSONDE_TEST_AGENT_LOG") != "" {
			t.Logf("agent log:\n%s", agent.Log.String())
		}
	})
	if agent.Ready > 5*time.Second {
		t.Errorf("ready after %v with the API server away, want within 5 s", agent.Ready)
	}
	m := agent.Scrape(t)
	for _, c := range []string{"drops", "mtu"} {
		if v, ok := m.Value("netsonde_collector_up", map[string]string{"collector": c}); !ok || v != 1 {
			t.Errorf("collector %s up=%v (found %v) with the API server away", c, v, ok)
		}
	}
	if v, ok := m.Value("netsonde_kube_up", nil); !ok || v != 0 {
		t.Fatalf("netsonde_kube_up = %v (present %v) with the API server away, want 0", v, ok)
	}

	testenv.SendUDP(t, node, "198.18.96.2:9999", 1, 100, 1)
	agent.WaitSum(t, "netsonde_packet_drops_total", map[string]string{"reason": "NETFILTER_DROP", "interface": "eth0", "pod": ""}, 100)
	if v, _ := agent.Scrape(t).Value("netsonde_kube_up", nil); v != 0 {
		t.Fatalf("netsonde_kube_up = %v before the API server started", v)
	}

	time.Sleep(late - time.Since(begin))
	restart := k.StartAPIServer(t)
	back := time.Now()
	testenv.Eventually(t, 60*time.Second, "the drops named pod shop/web once the API server answers", func() bool {
		return agent.Scrape(t).Sum("netsonde_packet_drops_total",
			map[string]string{"reason": "NETFILTER_DROP", "interface": "eth0", "namespace": "shop", "pod": "web"}) == 100
	})
	named := time.Since(back)
	agent.WaitSum(t, "netsonde_packet_drops_total", map[string]string{"reason": "NETFILTER_DROP", "interface": "eth0", "pod": ""}, 0)
	m = agent.Scrape(t)
	if v, _ := m.Value("netsonde_kube_up", nil); v != 1 {
		t.Errorf("netsonde_kube_up = %v once the pod is named, want 1", v)
	}
	if v, _ := m.Value("netsonde_kube_peer_nodes", nil); v != 1 {
		t.Errorf("netsonde_kube_peer_nodes = %v, want 1 (node-b)", v)
	}
	t.Logf("ready %v after start with the API server away; API server started %v after the agent, ready in %v; drops named %v after it was ready",
		agent.Ready, late, restart, named)
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "api-server-late",
		Injected: fmt.Sprintf("kube-apiserver down when the agent starts, started %v later", late),
		Lost:     fmt.Sprintf("nothing: ready in %v with every node-level collector up, 100 drops counted with empty pod labels, netsonde_kube_up 0", agent.Ready.Round(time.Millisecond)),
		Recovery: fmt.Sprintf("the same 100 drops named pod shop/web %v after the API server was ready, netsonde_kube_up 1, no restart", named.Round(time.Second)),
		Figures: map[string]any{
			"ready_s": agent.Ready.Seconds(), "apiserver_late_s": late.Seconds(), "apiserver_start_s": restart.Seconds(),
			"named_after_apiserver_ready_s": named.Seconds(),
		},
	})
}
