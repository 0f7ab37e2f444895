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

// waitValue waits up to 30 s: a change on the pod's side of a veth is
// seen when the host view next reads every namespace on the machine (every
// 200 ms here), and under CI those are hundreds of other packages' test
// namespaces; fresh-node with a busy CPU once took more than 10 s to see
// a pod's eth0 change.
func waitValue(t *testing.T, a *testenv.Agent, metric string, labels map[string]string, want float64) {
	t.Helper()
	var got float64
	var ok bool
	testenv.Eventually(t, 30*time.Second, metric+" reaches its value", func() bool {
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

	// Fixing each MTU clears its mismatch (a pod-side change within a few
	// refreshes of the host view; waitValue allows 30 s, for loaded machines).
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

// A VXLAN over an IPv6 underlay: u0 at 1,500 with an address on a /112 of
// fd00:5e::/64. Unbound and routed to its IPv6 remote at 1,500, the VXLAN
// is a mismatch with expected 1,430 (outer IPv6 40 + UDP 8 + VXLAN 8 +
// inner Ethernet 14 = 70); bound to u0 with an IPv6 local address and no
// remote (flannel's IPv6 VXLAN), the kernel gives it 1,430 and it fits.
// An interface of this IPv6 namespace set to 1,200 is below IPv6's
// minimum (the kernel took its IPv6 away); at 1,280 it is not.
func TestVXLANOverIPv6Underlay(t *testing.T) {
	node := testenv.NewNetns(t)
	peer := testenv.NewNetns(t)
	testenv.Run(t, "ip", "link", "add", "u0", "netns", node.Name, "mtu", "1500", "type", "veth", "peer", "name", "u1", "netns", peer.Name)
	node.Exec(t, "ip", "-6", "addr", "add", "fd00:5e::60:1/112", "dev", "u0", "nodad")
	node.Exec(t, "ip", "link", "set", "u0", "up")
	node.Exec(t, "ip", "link", "add", "vx6", "type", "vxlan", "id", "43", "remote", "fd00:5e::60:2", "dstport", "4789")
	node.Exec(t, "ip", "link", "set", "vx6", "mtu", "1500")
	node.Exec(t, "ip", "link", "add", "flannel-v6.1", "type", "vxlan", "id", "44", "local", "fd00:5e::60:1", "dev", "u0", "dstport", "4790", "nolearning")
	node.Exec(t, "ip", "link", "add", "low0", "mtu", "1200", "type", "bridge")

	a := testenv.StartAgent(t, node, "--collector.disable-defaults", "--collector.mtucheck", "--mtucheck.cni-dir="+t.TempDir(), "--hostnet.refresh-interval=200ms")

	waitValue(t, a, "netsonde_interface_expected_mtu_bytes", map[string]string{"interface": "vx6"}, 1430)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx6", "reason": "exceeds_underlay"}, 1)
	waitValue(t, a, "netsonde_interface_expected_mtu_bytes", map[string]string{"interface": "flannel-v6.1"}, 1430)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "flannel-v6.1", "reason": "exceeds_underlay"}, 0)
	if got, _ := a.Scrape(t).Value("netsonde_interface_mtu_bytes", map[string]string{"interface": "flannel-v6.1"}); got != 0 && got != 1430 {
		t.Errorf("the kernel gave the bound IPv6 VXLAN %v, not 1,430", got)
	}
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "low0", "reason": "below_ipv6_minimum"}, 1)
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx6", "reason": "below_ipv6_minimum"}, 0)
	if _, ok := mismatch(t, a, "u0", "below_ipv6_minimum"); ok {
		t.Error("u0 at 1,500 has a below_ipv6_minimum series: only judged interfaces and those below have one")
	}

	node.Exec(t, "ip", "link", "set", "vx6", "mtu", "1430")
	waitValue(t, a, "netsonde_mtu_mismatch", map[string]string{"interface": "vx6", "reason": "exceeds_underlay"}, 0)
	node.Exec(t, "ip", "link", "set", "low0", "mtu", "1280")
	testenv.Eventually(t, 2*time.Second, "low0's below_ipv6_minimum gone at 1,280", func() bool {
		_, ok := mismatch(t, a, "low0", "below_ipv6_minimum")
		return !ok
	})
}
