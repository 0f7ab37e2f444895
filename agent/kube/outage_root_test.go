package kube_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

const agentRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: netsonde-test}
rules: [{apiGroups: [""], resources: [pods, nodes], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: netsonde-test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: netsonde-test}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ` + testenv.AgentUser + `}]
`

// podNetns makes a namespace holding ip on eth0, with the host end hostIf
// in node, as a CNI plugin would for a pod.
func podNetns(t *testing.T, node *testenv.Netns, hostIf, hostIP, ip string) *testenv.Netns {
	t.Helper()
	pod := testenv.NewNetns(t)
	testenv.Run(t, "ip", "link", "add", hostIf, "netns", node.Name, "type", "veth", "peer", "name", "eth0", "netns", pod.Name)
	node.Exec(t, "ip", "addr", "add", hostIP+"/24", "dev", hostIf)
	pod.Exec(t, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	node.Exec(t, "ip", "link", "set", hostIf, "up")
	pod.Exec(t, "ip", "link", "set", "eth0", "up")
	return pod
}

func createPod(t *testing.T, k *testenv.KubeAPI, name, ip string) {
	t.Helper()
	k.Kubectl(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: shop}\nspec: {nodeName: node-a, containers: [{name: c, image: registry.invalid/c}]}\n", name), "create", "-f", "-")
	k.Kubectl(t, "", "patch", "pod", name, "-n", "shop", "--subresource=status", "--type=merge",
		"-p", fmt.Sprintf(`{"status":{"podIP":%q,"podIPs":[{"ip":%q}]}}`, ip, ip))
}

// The API server goes away for 30 s, then the agent's rights to list pods
// and nodes (RBAC) are removed and given back. Throughout, node-level
// metrics keep answering; netsonde_kube_up follows the true state; a
// pod whose namespace appeared during the outage has empty pod labels
// until the API server is back, then its own within one resync; client-go's
// lines are JSON like every other line (--log.format=json) and its
// repeated errors are rate-limited.
func TestAPIServerOutageAndRBACRemoved(t *testing.T) {
	const outage = 30 * time.Second
	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	nodes(t, k)
	k.Kubectl(t, agentRBAC, "create", "-f", "-")
	k.Kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "create", "-f", "-")
	podNetns(t, node, "vweb", "198.18.96.1", "198.18.96.2")
	createPod(t, k, "web", "198.18.96.2")

	agent := testenv.StartAgent(t, node, "--kubeconfig="+k.AgentKubeconfig, "--node-name=node-a", "--log.format=json",
		"--collector.disable-defaults", "--collector.mtu")
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("NETSONDE_TEST_AGENT_LOG") != "" {
			t.Logf("agent log:\n%s", agent.Log.String())
		}
	})
	podOf := func(iface string) (string, bool) {
		s := agent.Scrape(t).Series("netsonde_interface_mtu_bytes", map[string]string{"interface": iface})
		if len(s) != 1 {
			return "", false
		}
		return s[0].Labels["pod"], true
	}
	kubeUp := func() float64 {
		v, ok := agent.Scrape(t).Value("netsonde_kube_up", nil)
		if !ok {
			t.Fatal("no netsonde_kube_up")
		}
		return v
	}
	testenv.Eventually(t, 15*time.Second, "pod web attributed", func() bool { p, _ := podOf("vweb"); return p == "web" })
	if v := kubeUp(); v != 1 {
		t.Fatalf("netsonde_kube_up %v with the API server up", v)
	}

	// The outage.
	k.StopAPIServer(t)
	stopped := time.Now()
	var detected time.Duration
	var worst time.Duration
	scrapes, failed := 0, 0
	podNetns(t, node, "vweb2", "198.18.97.1", "198.18.97.2")
	for time.Since(stopped) < outage {
		begin := time.Now()
		code, body := agent.Get(t, "/metrics")
		worst = max(worst, time.Since(begin))
		scrapes++
		m, err := testenv.ParseMetrics(body)
		if code != 200 || err != nil {
			failed++
			continue
		}
		if _, ok := m.Value("netsonde_interface_mtu_bytes", map[string]string{"interface": "vweb"}); !ok {
			failed++ // a node-level series missing
		}
		if v, _ := m.Value("netsonde_kube_up", nil); v == 0 && detected == 0 {
			detected = time.Since(stopped)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if detected == 0 {
		t.Errorf("netsonde_kube_up stayed 1 through a %v outage", outage)
	}
	if failed > 0 {
		t.Errorf("%d of %d scrapes during the outage failed or lacked node-level series", failed, scrapes)
	}
	if p, ok := podOf("vweb2"); !ok || p != "" {
		t.Errorf("a pod that appeared during the outage: pod=%q (found %v), want empty", p, ok)
	}
	if p, _ := podOf("vweb"); p != "web" {
		t.Errorf("pod web, known before the outage, lost its name during it: %q", p)
	}

	// The API server comes back, and with it the pod's object.
	restart := k.StartAPIServer(t)
	back := time.Now()
	createPod(t, k, "web2", "198.18.97.2")
	testenv.Eventually(t, 30*time.Second, "pod web2 attributed after the API server is back", func() bool {
		p, _ := podOf("vweb2")
		return p == "web2"
	})
	attributed := time.Since(back)
	testenv.Eventually(t, 30*time.Second, "netsonde_kube_up back to 1", func() bool { return kubeUp() == 1 })
	resynced := time.Since(back)

	// RBAC removed: the API server answers 403.
	k.Kubectl(t, "", "delete", "clusterrolebinding", "netsonde-test")
	revoked := time.Now()
	testenv.Eventually(t, 40*time.Second, "netsonde_kube_up 0 once RBAC is removed", func() bool { return kubeUp() == 0 })
	forbiddenSeen := time.Since(revoked)
	if p, _ := podOf("vweb"); p != "web" {
		t.Errorf("pod web lost its name while the agent was forbidden: %q", p)
	}
	k.Kubectl(t, agentRBAC, "apply", "-f", "-")
	granted := time.Now()
	testenv.Eventually(t, 40*time.Second, "netsonde_kube_up 1 once RBAC is back", func() bool { return kubeUp() == 1 })
	regranted := time.Since(granted)

	testenv.StopAgent(t, agent)
	var clientGo, clientGoInfo, lines int
	for _, l := range strings.Split(strings.TrimSpace(agent.Log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("a log line is not JSON (--log.format=json): %q", l)
			continue
		}
		lines++
		if m["component"] == "client-go" {
			clientGo++
			if l, _ := m["level"].(string); !strings.HasPrefix(l, "DEBUG") {
				clientGoInfo++
			}
		}
	}
	total := time.Since(stopped)
	t.Logf("outage %v: %d scrapes, worst %v, %d failed; kube_up 0 after %v; API server ready %v after start; web2 attributed %v and kube_up 1 %v after it was back; 403 seen after %v, RBAC back seen after %v; %d log lines of client-go, %d of them at info or above (%d in all) over %v",
		outage, scrapes, worst, failed, detected, restart, attributed, resynced, forbiddenSeen, regranted, clientGo, clientGoInfo, lines, total)
	// Without rate limiting, the two reflectors log each retry (backoff
	// up to 30 s): dozens of lines at debug, several at error. The bound
	// is loose on purpose; the counts go to the table.
	if clientGo > 30 || clientGoInfo > 10 {
		t.Errorf("%d client-go log lines (%d at info or above) in %v: not rate-limited", clientGo, clientGoInfo, total)
	}
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "api-server-outage",
		Injected: fmt.Sprintf("kube-apiserver stopped for %v (etcd kept), a pod's namespace created meanwhile; then the agent's ClusterRoleBinding deleted (403) and restored", outage),
		Lost:     fmt.Sprintf("no scrape (%d during the outage, worst %v, %d failed); the new pod unlabelled until the API server returned", scrapes, worst.Round(time.Millisecond), failed),
		Recovery: fmt.Sprintf("kube_up 0 after %v; pod attributed %v after the API server was ready, kube_up 1 after %v; 403 seen after %v, recovery %v after RBAC was restored", detected.Round(time.Second), attributed.Round(time.Second), resynced.Round(time.Second), forbiddenSeen.Round(time.Second), regranted.Round(time.Second)),
		Figures: map[string]any{
			"outage_s": outage.Seconds(), "scrapes": scrapes, "scrapes_failed": failed, "scrape_worst_ms": worst.Milliseconds(),
			"kube_down_detected_s": detected.Seconds(), "apiserver_restart_s": restart.Seconds(),
			"pod_attributed_after_return_s": attributed.Seconds(), "kube_up_after_return_s": resynced.Seconds(),
			"forbidden_detected_s": forbiddenSeen.Seconds(), "rbac_restored_detected_s": regranted.Seconds(),
			"client_go_log_lines": clientGo, "client_go_log_lines_info": clientGoInfo,
		},
	})
}
