package drops_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/testenv"
)

// quietNetns is a namespace without IPv6, so that no router solicitation,
// DAD or MLD frame can be dropped in it or on its veths: the tests below
// count every key the map holds.
func quietNetns(t *testing.T) *testenv.Netns {
	t.Helper()
	ns := testenv.NewNetns(t)
	// /proc/sys/net is the namespace's own: not a global setting.
	ns.Exec(t, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return ns
}

// agentArgs are the agent's flags for the drops collector alone, counting
// only the drops in nss (--drops.only-netns), then args.
func agentArgs(t *testing.T, nss []*testenv.Netns, args ...string) []string {
	out := []string{"--collector.disable-defaults", "--collector.drops"}
	for _, ns := range nss {
		out = append(out, "--drops.only-netns="+strconv.FormatUint(ns.Cookie(t), 10))
	}
	return append(out, args...)
}

func macOf(t *testing.T, ns *testenv.Netns, ifname string) net.HardwareAddr {
	t.Helper()
	mac, err := net.ParseMAC(strings.TrimSpace(ns.Exec(t, "cat", "/sys/class/net/"+ifname+"/address")))
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// sendFrames sends one minimal Ethernet frame to dst out of ifname per
// EtherType in types, from an AF_PACKET socket of the calling thread's
// namespace, paced so that the receiver's backlog never overflows.
func sendFrames(ifname string, dst net.HardwareAddr, types []uint16) error {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	// Protocol 0: the socket sends and receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6}
	copy(to.Addr[:], dst)
	frame := make([]byte, 60)
	copy(frame, dst)
	copy(frame[6:], ifc.HardwareAddr)
	for i, et := range types {
		binary.BigEndian.PutUint16(frame[12:], et)
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("frame %d (EtherType %#04x): %w", i, et, err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// handled lists the EtherTypes some part of this kernel takes frames of
// (/proc/net/ptype, from ns): a frame of those is not dropped as
// unhandled.
func handled(t *testing.T, ns *testenv.Netns) map[uint16]bool {
	t.Helper()
	got := map[uint16]bool{}
	sc := bufio.NewScanner(strings.NewReader(ns.Exec(t, "cat", "/proc/net/ptype")))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseUint(f[0], 16, 16); err == nil {
			got[uint16(v)] = true
		}
	}
	return got
}

// known are the EtherTypes drops.c keys by (proto_key); the others are
// folded into one key.
var known = []uint16{0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x8847, 0x8848, 0x8863, 0x8864, 0x88cc}

// randomEtherTypes draws n EtherTypes a pod may choose: none of the known
// ones, none with a handler in the kernel, none below 0x0600 (a length,
// which eth_type_trans turns into 802.3).
func randomEtherTypes(t *testing.T, ns *testenv.Netns, n int) []uint16 {
	skip := handled(t, ns)
	for _, k := range known {
		skip[k] = true
	}
	out := make([]uint16, 0, n)
	for len(out) < n {
		et := uint16(rand.IntN(0x10000))
		if et >= 0x0600 && !skip[et] {
			out = append(out, et)
		}
	}
	return out
}

const rawSenderEnv = "NETSONDE_DROPS_RAW_SENDER"

// TestRawSender is not a test: it is the pod's process of
// TestRandomEtherTypesFromPod, this binary run again as nobody with only
// CAP_NET_RAW. It reads EtherTypes (big-endian uint16s) from stdin and
// sends a frame of each.
func TestRawSender(t *testing.T) {
	args := os.Getenv(rawSenderEnv)
	if args == "" {
		t.Skip("run by TestRandomEtherTypesFromPod")
	}
	ifname, dstS, _ := strings.Cut(args, ",")
	dst, err := net.ParseMAC(dstS)
	if err != nil {
		t.Fatal(err)
	}
	// The premise: no root, no capability but CAP_NET_RAW.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "CapEff:\t0000000000002000\n") || os.Geteuid() == 0 {
		t.Fatalf("want uid != 0 and only CAP_NET_RAW; uid %d, %s", os.Geteuid(), status)
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		t.Fatal(err)
	}
	types := make([]uint16, len(raw)/2)
	for i := range types {
		types[i] = binary.BigEndian.Uint16(raw[2*i:])
	}
	if err := sendFrames(ifname, dst, types); err != nil {
		t.Fatal(err)
	}
}

// runUnprivileged runs TestRawSender in ns as nobody, with CAP_NET_RAW
// alone (a container's default capability), sending a frame of each of
// types out of ifname to dst.
func runUnprivileged(t *testing.T, ns *testenv.Netns, ifname string, dst net.HardwareAddr, types []uint16) {
	t.Helper()
	testenv.RequireCommand(t, "setpriv")
	// The test binary's own directory is root's alone: a copy nobody can
	// run.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sender")
	testenv.Run(t, "cp", self, bin)
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+net_raw", "--ambient-caps=-all,+net_raw", "--bounding-set=-all,+net_raw",
		bin, "-test.run=^TestRawSender$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), rawSenderEnv+"="+ifname+","+dst.String())
	in := make([]byte, 2*len(types))
	for i, et := range types {
		binary.BigEndian.PutUint16(in[2*i:], et)
	}
	cmd.Stdin = strings.NewReader(string(in))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: TestRawSender") {
		t.Fatalf("unprivileged sender: %v\n%s", err, out)
	}
}

// Issue 24: a process in a pod with only CAP_NET_RAW, not root, sends
// 9,000 frames of random EtherTypes out of its eth0. The node drops every
// one on the pod's veth (no handler for the EtherType): all 9,000 are
// counted there, under a handful of series (protocol="other", not one
// series per EtherType), and the drops map is never full. Before, the
// node exported 8,229 series for them and filled the map.
func TestRandomEtherTypesFromPod(t *testing.T) {
	const frames = 9_000
	node, pod := quietNetns(t), quietNetns(t)
	hostIf := testenv.RandomName("vp")
	testenv.Veth(t, pod, node, "eth0", hostIf, "198.18.61.2/24", "198.18.61.1/24", 0)
	// The default map and quotas; only the test's namespaces counted, so
	// that map_full is this test's alone.
	a := testenv.StartAgent(t, node, agentArgs(t, []*testenv.Netns{node, pod})...)
	iface := map[string]string{"interface": hostIf}
	m := a.Scrape(t)
	fullBefore, _ := m.Value("netsonde_bpf_map_full_total", map[string]string{"map": "drops"})
	types := randomEtherTypes(t, node, frames)
	distinct := map[uint16]bool{}
	for _, et := range types {
		distinct[et] = true
	}
	runUnprivileged(t, pod, "eth0", macOf(t, node, hostIf), types)
	a.WaitSum(t, dropsMetric, iface, frames)
	m = a.Scrape(t)
	series := m.Series(dropsMetric, iface)
	other := m.Sum(dropsMetric, map[string]string{"interface": hostIf, "protocol": "other"})
	full, _ := m.Value("netsonde_bpf_map_full_total", map[string]string{"map": "drops"})
	for _, s := range series {
		t.Logf("%v %v", s.Labels, s.Value)
	}
	if len(series) > 16 || other != frames || full != fullBefore {
		t.Errorf("%d series on %s, %v drops with protocol=\"other\", map full +%v; want at most 16 series, all %d \"other\", map full +0",
			len(series), hostIf, other, full-fullBefore, frames)
	}
	t.Logf("%d frames of %d distinct EtherTypes sent by nobody with CAP_NET_RAW: %v counted on %s in %d series, map full +%v",
		frames, len(distinct), m.Sum(dropsMetric, iface), hostIf, len(series), full-fullBefore)
}

// One interface making many distinct keys (five EtherTypes, each its own
// key) cannot take the map from another: with a 4-key map and a quota of
// 2 keys per interface, the first interface's first two keys are counted
// with their labels and the other three EtherTypes' drops are refused,
// counted exactly by reason alone and in
// netsonde_packet_drops_quota_refused_total; the second interface's two
// new keys still get their labels. Without the quota the first interface
// took the whole map and the second's drops lost their labels.
func TestQuotaKeepsMapForOtherInterfaces(t *testing.T) {
	testQuota(t, 2)
}

func testQuota(t *testing.T, quota int) {
	const each = 100
	node, podA, podB := quietNetns(t), quietNetns(t), quietNetns(t)
	hA, hB := testenv.RandomName("qa"), testenv.RandomName("qb")
	testenv.Veth(t, podA, node, "eth0", hA, "198.18.62.2/24", "198.18.62.1/24", 0)
	testenv.Veth(t, podB, node, "eth0", hB, "198.18.63.2/24", "198.18.63.1/24", 0)
	// The agent in a namespace of its own, not counted: its scrapes'
	// sockets drop there too (QUEUE_PURGE), and would take a key.
	a := testenv.StartAgent(t, testenv.NewNetns(t), agentArgs(t, []*testenv.Netns{node, podA, podB},
		"--drops.map-size=4", fmt.Sprintf("--drops.max-keys-per-interface=%d", quota))...)
	skip := handled(t, node)
	// Each its own key: three known EtherTypes and one other; with no
	// handler in this kernel.
	var kinds []uint16
	for _, et := range []uint16{0x88cc, 0x8863, 0x8864, 0x8848, 0x8847, 0x8100, 0x88a8} {
		if !skip[et] {
			kinds = append(kinds, et)
		}
	}
	if len(kinds) < 4 {
		t.Fatalf("only %d known EtherTypes without a handler here: %x", len(kinds), kinds)
	}
	kindsA := append(kinds[:4:4], 0x88b5) //nolint:gocritic // a copy: the full slice expression caps it // IEEE local experimental: "other"
	kindsB := kinds[:2]
	send := func(ns *testenv.Netns, host string, kinds []uint16) {
		var types []uint16
		for _, k := range kinds {
			for range each {
				types = append(types, k)
			}
		}
		dst := macOf(t, node, host)
		if err := ns.Do(func() error { return sendFrames("eth0", dst, types) }); err != nil {
			t.Fatal(err)
		}
	}
	send(podA, hA, kindsA)
	a.WaitSum(t, dropsMetric, map[string]string{"interface": hA}, float64(quota*each))
	a.WaitSum(t, "netsonde_packet_drops_quota_refused_total", nil, float64((len(kindsA)-quota)*each))
	send(podB, hB, kindsB)
	a.WaitSum(t, dropsMetric, map[string]string{"interface": hB}, float64(len(kindsB)*each))
	m := a.Scrape(t)
	byReason := m.Sum(dropsMetric, map[string]string{"interface": "", "protocol": ""})
	refused, _ := m.Value("netsonde_packet_drops_quota_refused_total", nil)
	full, _ := m.Value("netsonde_bpf_map_full_total", map[string]string{"map": "drops"})
	if byReason != refused || full != 0 || len(m.Series(dropsMetric, map[string]string{"interface": hA})) != quota {
		t.Errorf("by reason alone %v, refused %v, map full %v, %d series on %s; want %v, %v, 0, %d",
			byReason, refused, full, len(m.Series(dropsMetric, map[string]string{"interface": hA})), hA,
			refused, (len(kindsA)-quota)*each, quota)
	}
	t.Logf("%s: %v keyed in %d series, %v refused; %s: %v keyed in %d series; map full %v",
		hA, m.Sum(dropsMetric, map[string]string{"interface": hA}), len(m.Series(dropsMetric, map[string]string{"interface": hA})), refused,
		hB, m.Sum(dropsMetric, map[string]string{"interface": hB}), len(m.Series(dropsMetric, map[string]string{"interface": hB})), full)
}

// A namespace's quota is given back when its keys are forgotten: with
// room for one key per pod namespace, interface d1's drops are refused
// while d0's key holds the room, and counted under d1 once d0 is deleted
// and its key forgotten (--drops.forget-after).
func TestQuotaCreditedWhenForgotten(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	const each = 10
	node, pod := quietNetns(t), quietNetns(t)
	a := testenv.StartAgent(t, node, agentArgs(t, []*testenv.Netns{node, pod}, "--drops.map-size=64",
		"--drops.max-keys-per-namespace=1", "--drops.forget-after=1s", "--hostnet.refresh-interval=500ms")...)
	pod.Exec(t, "nft", "add table inet t; add chain inet t post { type filter hook postrouting priority 0; }; add rule inet t post udp dport 9999 drop")
	link := func(i int) {
		pod.Exec(t, "ip", "link", "add", fmt.Sprintf("d%d", i), "type", "veth", "peer", "name", fmt.Sprintf("p%d", i))
		pod.Exec(t, "ip", "link", "set", fmt.Sprintf("d%d", i), "up")
		pod.Exec(t, "ip", "link", "set", fmt.Sprintf("p%d", i), "up")
		pod.Exec(t, "ip", "addr", "add", fmt.Sprintf("198.19.%d.1/30", i), "dev", fmt.Sprintf("d%d", i))
	}
	drop := func(i int) { // NETFILTER_DROP at POSTROUTING, on d<i>
		t.Helper()
		testenv.SendDropped(t, pod, fmt.Sprintf("198.19.%d.2:9999", i), each)
	}
	on := func(i int) map[string]string { return map[string]string{"interface": fmt.Sprintf("d%d", i)} }
	refused := func() float64 { v, _ := a.Scrape(t).Value("netsonde_packet_drops_quota_refused_total", nil); return v }
	link(0)
	link(1)
	drop(0)
	a.WaitSum(t, dropsMetric, on(0), each)
	drop(1)
	a.WaitSum(t, "netsonde_packet_drops_quota_refused_total", nil, each)
	pod.Exec(t, "ip", "link", "del", "d0")
	testenv.Eventually(t, 15*time.Second, "d0's key forgotten", func() bool {
		return len(a.Scrape(t).Series(dropsMetric, on(0))) == 0
	})
	drop(1)
	a.WaitSum(t, dropsMetric, on(1), each)
	if r := refused(); r != each {
		t.Errorf("refused %v, want %d: d1's drops after d0 was forgotten were refused too", r, each)
	}
}
