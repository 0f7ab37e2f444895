package netdev_test

import (
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestPodVethLabelled: with a real kube-apiserver, the host end of pod
// shop/web's veth carries the pod on its drops and carrier changes, as the
// MTU series do: the pod's eth0 set down (one carrier change more on the
// host end) and 100 datagrams sent to the pod are +100 tx drops of the
// host end, labelled namespace=shop, pod=web, equal to the kernel's.
func TestPodVethLabelled(t *testing.T) {
	node, pod := testenv.NewNetns(t), testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	k.CreatePod(t, "shop", "web", "node-a", "198.18.103.2")
	testenv.Veth(t, node, pod, "vweb", "eth0", "198.18.103.1/24", "198.18.103.2/24", 0)
	node.Exec(t, "sysctl", "-qw", "net.ipv6.conf.vweb.disable_ipv6=1")
	mac := strings.TrimSpace(pod.Exec(t, "cat", "/sys/class/net/eth0/address"))
	node.Exec(t, "ip", "neigh", "replace", "198.18.103.2", "lladdr", mac, "dev", "vweb", "nud", "permanent")
	agent := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--collector.netdev", "--netdev.interval=100ms")
	testenv.Eventually(t, 15*time.Second, "pod shop/web found in its namespace", func() bool {
		found, _ := agent.Scrape(t).Value("netsonde_kube_pods_attributed", nil)
		return found == 1
	})

	pod.Exec(t, "ip", "link", "set", "eth0", "down")
	before := sysfsCounter(t, node, "vweb", "statistics/tx_dropped")
	testenv.SendUDP(t, node, "198.18.103.2:9", 100, 100, 0)
	after := sysfsCounter(t, node, "vweb", "statistics/tx_dropped")
	if after-before != 100 {
		t.Fatalf("kernel tx_dropped of vweb +%v for 100 datagrams to a down pod; want +100", after-before)
	}
	web := map[string]string{"interface": "vweb", "namespace": "shop", "pod": "web"}
	waitValue(t, agent, "netsonde_interface_drops_total", with(web, "direction", "tx"), after)
	carrier := sysfsCounter(t, node, "vweb", "carrier_changes")
	waitValue(t, agent, "netsonde_interface_carrier_changes_total", web, carrier)
	t.Logf("vweb of shop/web: tx_dropped %v, carrier_changes %v; netsonde the same, labelled", after, carrier)
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}
