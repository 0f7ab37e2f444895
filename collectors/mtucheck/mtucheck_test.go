package mtucheck_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

func mismatch(t *testing.T, a *testenv.Agent, iface, reason string) (float64, bool) {
	return a.Scrape(t).Value("netsonde_mtu_mismatch", map[string]string{"interface": iface, "reason": reason})
}

func waitValue(t *testing.T, a *testenv.Agent, metric string, labels map[string]string, want float64) {
	t.Helper()
	var got float64
	var ok bool
	testenv.Eventually(t, time.Second, metric+" reaches its value", func() bool {
		got, ok = a.Scrape(t).Value(metric, labels)
		return ok && got == want
	})
}

// A VXLAN device over a 1,500-byte underlay, with a pod's veth behind it,
// and a CNI config that declares 1,450.
func TestOverlayAndPodMismatch(t *testing.T) {
	node := testenv.NewNetns(t)
	peer := testenv.NewNetns(t)
	pod := testenv.NewNetns(t)
	cniDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(cniDir, "10-test.conflist"),
		[]byte(`{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"bridge","mtu":1450},{"type":"portmap"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "ip", "link", "add", "u0", "netns", node.Name, "mtu", "1500", "type", "veth", "peer", "name", "u1", "netns", peer.Name)
	node.Exec(t, "ip", "addr", "add", "198.18.60.1/24", "dev", "u0")
	node.Exec(t, "ip", "link", "set", "u0", "up")
	// Not bound to u0 ("dev"): the kernel then refuses an MTU that does not
	// fit, so the misconfiguration this test is about is the unbound VXLAN,
	// whose underlay netsonde finds by the route to its remote.
	node.Exec(t, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", "198.18.60.2", "dstport", "4789")
	node.Exec(t, "ip", "link", "set", "vx0", "mtu", "1500")
	testenv.Run(t, "ip", "link", "add", "p0", "netns", node.Name, "mtu", "1500", "type", "veth", "peer", "name", "eth0", "netns", pod.Name)

	a := testenv.StartAgent(t, node, "--collector.disable-defaults", "--collector.mtucheck", "--mtucheck.cni-dir="+cniDir, "--hostnet.refresh-interval=200ms")

	// 1,500 - 50 (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
	waitValue(t, a, "netsonde_interface_expected_mtu_bytes", map[string]string{"interface": "vx0"}, 1450)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx0", "reason": "exceeds_underlay"}, 1)
	// The pod's veth at 1,500 cannot fit through an overlay that carries
	// 1,450 at most, and differs from the CNI config's 1,450.
	waitValue(t, a, "netsonde_interface_expected_mtu_bytes", map[string]string{"interface": "p0"}, 1450)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "exceeds_overlay"}, 1)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_cni_config"}, 1)
	waitValue(t, a, "netsonde_cni_config_mtu_bytes", map[string]string{"file": filepath.Join(cniDir, "10-test.conflist")}, 1450)
	if _, ok := mismatch(t, a, "u0", "exceeds_overlay"); ok {
		t.Error("the underlay veth must not be judged as a pod interface")
	}

	// Fixing each MTU clears its mismatch within one second.
	node.Exec(t, "ip", "link", "set", "vx0", "mtu", "1450")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx0", "reason": "exceeds_underlay"}, 0)
	node.Exec(t, "ip", "link", "set", "p0", "mtu", "1450")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "exceeds_overlay"}, 0)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_cni_config"}, 0)
	// The host end was fixed, the pod's end (eth0, in the pod's namespace)
	// is still at 1,500: the two ends disagree until it follows.
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_peer"}, 1)
	pod.Exec(t, "ip", "link", "set", "eth0", "mtu", "1450")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_peer"}, 0)
	pod.Exec(t, "ip", "link", "set", "eth0", "mtu", "1400")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_peer"}, 1)
	pod.Exec(t, "ip", "link", "set", "eth0", "mtu", "1450")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "p0", "reason": "differs_from_peer"}, 0)

	// Shrinking the underlay raises the tunnel's mismatch again.
	node.Exec(t, "ip", "link", "set", "u0", "mtu", "1400")
	waitValue(t, a, "netsonde_interface_expected_mtu_bytes", map[string]string{"interface": "vx0"}, 1350)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx0", "reason": "exceeds_underlay"}, 1)
}
