package kube_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

const podYAML = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  nodeName: node-a
  containers: [{name: web, image: registry.invalid/web}]
---
apiVersion: v1
kind: Pod
metadata: {name: host-agent, namespace: shop}
spec:
  nodeName: node-a
  hostNetwork: true
  containers: [{name: a, image: registry.invalid/a}]
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere, namespace: shop}
spec:
  nodeName: node-b
  containers: [{name: e, image: registry.invalid/e}]
`

func nodes(t *testing.T, k *testenv.KubeAPI) {
	t.Helper()
	for _, n := range []struct{ name, ip string }{{"node-a", "198.18.95.1"}, {"node-b", "198.18.95.2"}} {
		k.Kubectl(t, fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata: {name: %s}\n", n.name), "create", "-f", "-")
		k.Kubectl(t, "", "patch", "node", n.name, "--subresource=status", "--type=merge",
			"-p", fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q}]}}`, n.ip))
	}
}

// The agent, told it runs on node-a, sees the pods of node-a through its
// informers; a drop in the network namespace that holds pod shop/web's
// address is labelled with that pod, and so is the host end of its veth;
// node-b becomes a path-MTU target. Deleting the pod takes its series away.
func TestPodAttributionAgainstRealAPIServer(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	nodes(t, k)
	k.Kubectl(t, podYAML, "create", "-f", "-")
	k.Kubectl(t, "", "patch", "pod", "web", "-n", "shop", "--subresource=status", "--type=merge",
		"-p", `{"status":{"podIP":"198.18.96.2","podIPs":[{"ip":"198.18.96.2"}]}}`)

	pod := podNetns(t, node, "vweb", "198.18.96.1", "198.18.96.2")
	pod.Exec(t, "nft", "add table inet t; add chain inet t in { type filter hook input priority 0; }; add rule inet t in udp dport 9999 drop")
	node.Exec(t, "ping", "-c1", "-W2", "198.18.96.2")

	agent := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--collector.drops", "--collector.mtu", "--collector.pmtu",
		"--pmtu.interval=1h", "--pmtu.timeout=100ms", "--pmtu.gap=10ms")
	testenv.Eventually(t, 15*time.Second, "pod shop/web found in its namespace", func() bool {
		m := agent.Scrape(t)
		pods, _ := m.Value("netsonde_kube_pods", nil)
		found, _ := m.Value("netsonde_kube_pods_attributed", nil)
		return pods == 1 && found == 1 // hostNetwork and other nodes' pods excluded
	})

	testenv.SendUDP(t, node, "198.18.96.2:9999", 1, 100, 1)
	agent.WaitSum(t, "netsonde_packet_drops_total",
		map[string]string{"reason": "NETFILTER_DROP", "interface": "eth0", "namespace": "shop", "pod": "web"}, 100)
	if _, ok := agent.Scrape(t).Value("netsonde_interface_mtu_bytes", map[string]string{"interface": "vweb", "namespace": "shop", "pod": "web"}); !ok {
		t.Error("host end of the pod's veth not labelled with the pod")
	}
	testenv.Eventually(t, 10*time.Second, "node-b probed as a path-MTU target", func() bool {
		_, ok := agent.Scrape(t).Value("netsonde_path_mtu_probes_total", map[string]string{"target": "198.18.95.2"})
		return ok
	})
	if _, ok := agent.Scrape(t).Value("netsonde_path_mtu_probes_total", map[string]string{"target": "198.18.95.1"}); ok {
		t.Error("the agent probes its own node")
	}

	k.Kubectl(t, "", "delete", "pod", "web", "-n", "shop", "--grace-period=0", "--force")
	testenv.Eventually(t, 10*time.Second, "series of the deleted pod gone", func() bool {
		m := agent.Scrape(t)
		return len(m.Series("netsonde_packet_drops_total", map[string]string{"pod": "web"})) == 0 &&
			len(m.Series("netsonde_interface_mtu_bytes", map[string]string{"pod": "web"})) == 0
	})
}

// A few thousand pods created and deleted on the node: the agent follows
// (its pod count goes up and back to zero) and keeps no label set of theirs.
func TestPodChurn(t *testing.T) {
	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	nodes(t, k)
	k.Kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: churn}\n", "create", "-f", "-")
	agent := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--collector.mtu")

	const n = 2000
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "- {apiVersion: v1, kind: Pod, metadata: {name: p%d, namespace: churn}, spec: {nodeName: node-a, containers: [{name: c, image: registry.invalid/c}]}}\n", i)
	}
	k.Kubectl(t, b.String(), "create", "-f", "-")
	testenv.Eventually(t, 60*time.Second, "agent sees 2,000 pods", func() bool {
		v, _ := agent.Scrape(t).Value("netsonde_kube_pods", nil)
		return v == n
	})
	// --kube.max-pods is 1000 by default: the rest are counted.
	if v, _ := agent.Scrape(t).Value("netsonde_kube_pods_overflow", nil); v != n-1000 {
		t.Errorf("netsonde_kube_pods_overflow %v with %d pods, want %d", v, n, n-1000)
	}
	k.Kubectl(t, "", "delete", "pods", "--all", "-n", "churn", "--grace-period=0", "--force", "--wait=false")
	testenv.Eventually(t, 60*time.Second, "agent sees no pods", func() bool {
		v, _ := agent.Scrape(t).Value("netsonde_kube_pods", nil)
		return v == 0
	})
	m := agent.Scrape(t)
	for name, fam := range m {
		for _, s := range m.Series(name, nil) {
			if s.Labels["namespace"] == "churn" {
				t.Errorf("%s still has a series of a deleted pod: %v", name, s.Labels)
			}
		}
		_ = fam
	}
}
