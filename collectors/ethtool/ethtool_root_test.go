package ethtool_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/netsonde/netsonde/internal/testenv"
)

var xdpDrops = regexp.MustCompile(`rx_queue_\d+_xdp_drops: (\d+)`)

// ethtoolXDPDrops sums `ethtool -S`'s rx_queue_*_xdp_drops of dev.
func ethtoolXDPDrops(t *testing.T, ns *testenv.Netns, dev string) float64 {
	t.Helper()
	out := ns.Exec(t, "ethtool", "-S", dev)
	var sum float64
	ms := xdpDrops.FindAllStringSubmatch(out, -1)
	if len(ms) == 0 {
		t.Fatalf("no rx_queue_*_xdp_drops in ethtool -S %s:\n%s", dev, out)
	}
	for _, m := range ms {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

// An XDP program that drops everything on a veth, given 100 datagrams:
// netsonde_nic_drops_total{counter="rx_queue_N_xdp_drops"} +100, equal to
// `ethtool -S`'s rx_queue_*_xdp_drops.
func TestVethXDPDrops(t *testing.T) {
	testenv.RequireCommand(t, "ethtool")
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Run(t, "ip", "link", "add", "xa0", "netns", a.Name, "type", "veth", "peer", "name", "xb0", "netns", b.Name)
	// No IPv6 on the sender: its solicitations would meet the program too.
	a.Exec(t, "sysctl", "-qw", "net.ipv6.conf.xa0.disable_ipv6=1")
	a.Exec(t, "ip", "addr", "add", "198.18.30.1/24", "dev", "xa0")
	b.Exec(t, "ip", "addr", "add", "198.18.30.2/24", "dev", "xb0")
	a.Exec(t, "ip", "link", "set", "xa0", "up")
	b.Exec(t, "ip", "link", "set", "xb0", "up")
	mac := strings.TrimSpace(b.Exec(t, "cat", "/sys/class/net/xb0/address"))
	a.Exec(t, "ip", "neigh", "replace", "198.18.30.2", "lladdr", mac, "dev", "xa0", "nud", "permanent")

	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1 /* XDP_DROP */), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var l link.Link
	if err := b.Do(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: b.IfIndex(t, "xb0")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	agent := testenv.StartAgent(t, b, "--collector.disable-defaults", "--collector.ethtool", "--ethtool.interval=100ms")
	labels := map[string]string{"interface": "xb0", "counter": "rx_queue_N_xdp_drops"}
	before := ethtoolXDPDrops(t, b, "xb0")
	if before > 0 {
		t.Fatalf("%v XDP drops before any traffic", before)
	}
	time.Sleep(300 * time.Millisecond)
	if _, ok := agent.Scrape(t).Value("netsonde_nic_drops_total", labels); ok {
		t.Fatal("a series for 0 drops; want none until the first")
	}

	testenv.SendUDP(t, a, "198.18.30.2:9", 100, 100, 0)
	var after float64
	testenv.Eventually(t, 2*time.Second, "100 XDP drops in ethtool -S", func() bool {
		after = ethtoolXDPDrops(t, b, "xb0")
		return after >= 100
	})
	if after != 100 {
		t.Fatalf("ethtool -S counts %v XDP drops for 100 datagrams", after)
	}
	testenv.Eventually(t, 5*time.Second, "netsonde's XDP drops equal ethtool's", func() bool {
		v, ok := agent.Scrape(t).Value("netsonde_nic_drops_total", labels)
		return ok && v == after
	})
	time.Sleep(250 * time.Millisecond)
	m := agent.Scrape(t)
	if v, _ := m.Value("netsonde_nic_drops_total", labels); v != after {
		t.Fatalf("netsonde then %v, want %v", v, after)
	}
	// Only the named counters: none of veth's xdp_packets or xdp_bytes.
	for _, s := range m.Series("netsonde_nic_drops_total", nil) {
		if !strings.HasSuffix(s.Labels["counter"], "drops") {
			t.Errorf("a counter not of the list: %v", s.Labels)
		}
	}
	t.Logf("ethtool -S rx_queue_*_xdp_drops %v → %v; netsonde %v", before, after, after)
}
