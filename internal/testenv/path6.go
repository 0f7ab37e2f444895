package testenv

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Path6 is three namespaces A — R — B routed over IPv6 on two /112s of
// fd00:5e::/64, the R–B link at a chosen MTU: the path-MTU tests' IPv6
// topology. No namespace has a default route, so nothing they send can
// leave for the world.
type Path6 struct {
	A, R, B *Netns
}

// Addresses on Path6: A's on the A–R /112, B's on the R–B /112.
const (
	Path6A = "fd00:5e::1:1"
	Path6B = "fd00:5e::2:2"
)

// NewPath6 builds A — R — B with the R–B link at mtu (A–R at the
// kernel's 1,500). R forwards; duplicate address detection is off, so the
// addresses are usable at once, and no ICMPv6 error is rate-limited, so
// every probe gets its answer (per-namespace settings, nothing global).
func NewPath6(t testing.TB, mtu int) *Path6 {
	t.Helper()
	p := &Path6{A: NewNetns(t), R: NewNetns(t), B: NewNetns(t)}
	for _, ns := range []*Netns{p.A, p.R, p.B} {
		// Before the links are made: they take the namespace's defaults.
		ns.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
			"net.ipv6.icmp.ratelimit=0")
	}
	p.R.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	Run(t, "ip", "link", "add", "a0", "netns", p.A.Name, "type", "veth", "peer", "name", "r0", "netns", p.R.Name)
	m := strconv.Itoa(mtu)
	Run(t, "ip", "link", "add", "r1", "netns", p.R.Name, "mtu", m, "type", "veth", "peer", "name", "b0", "netns", p.B.Name, "mtu", m)
	p.A.Exec(t, "ip", "-6", "addr", "add", Path6A+"/112", "dev", "a0", "nodad")
	p.R.Exec(t, "ip", "-6", "addr", "add", "fd00:5e::1:2/112", "dev", "r0", "nodad")
	p.R.Exec(t, "ip", "-6", "addr", "add", "fd00:5e::2:1/112", "dev", "r1", "nodad")
	p.B.Exec(t, "ip", "-6", "addr", "add", Path6B+"/112", "dev", "b0", "nodad")
	for ns, ifs := range map[*Netns][]string{p.A: {"a0"}, p.R: {"r0", "r1"}, p.B: {"b0"}} {
		for _, i := range ifs {
			ns.Exec(t, "ip", "link", "set", i, "up")
		}
	}
	p.A.Exec(t, "ip", "-6", "route", "add", "fd00:5e::2:0/112", "via", "fd00:5e::1:2")
	p.B.Exec(t, "ip", "-6", "route", "add", "fd00:5e::1:0/112", "via", "fd00:5e::2:1")
	return p
}

// DropPacketTooBig makes R drop every ICMPv6 packet-too-big it sends, as
// a firewall that filters ICMPv6 does: a PMTU black hole. It stays until
// the test ends (the namespace goes with it).
func (p *Path6) DropPacketTooBig(t testing.TB) {
	t.Helper()
	RequireCommand(t, "nft")
	p.R.Exec(t, "nft", "add table inet bh6; add chain inet bh6 out { type filter hook output priority 0; }; "+
		"add rule inet bh6 out icmpv6 type packet-too-big counter drop")
}

// PacketTooBigDropped is how many packet-too-big R's rule has dropped.
func (p *Path6) PacketTooBigDropped(t testing.TB) int {
	t.Helper()
	return nftCounter(t, p.R, "bh6", "out")
}

// Tracepath6 runs `tracepath -6 -n` from ns to dst and returns the path
// MTU its summary line reports ("Resume: pmtu N ...").
func Tracepath6(t testing.TB, ns *Netns, dst string) int {
	t.Helper()
	RequireCommand(t, "tracepath")
	out := ns.Exec(t, "tracepath", "-6", "-n", "-m", "8", dst)
	for _, line := range strings.Split(out, "\n") {
		if m := regexp.MustCompile(`Resume: pmtu (\d+)`).FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	t.Fatalf("tracepath -6 %s: no \"Resume: pmtu\" line:\n%s", dst, out)
	return 0
}

// PathMTU is one probe run's result as the agent reports it.
type PathMTU struct {
	PMTU, Blackhole, Probes float64
}

// ProbePathMTU starts an agent in ns with only the path-MTU probe, to
// target alone, waits for its first run to finish (90 s at most) and
// returns what it reported, then stops the agent. A probe is lost after
// 2 s without an answer: on a shared machine (and under qemu without KVM)
// 1 s has been seen to pass before a packet-too-big came back, which made
// 3 probes of an exact 2.
func ProbePathMTU(t testing.TB, ns *Netns, target string) PathMTU {
	t.Helper()
	return probePathMTU(t, ns, nil, target)
}

// ProbePathMTUWithoutNetRaw is ProbePathMTU with an agent that lacks
// CAP_NET_RAW (as in a pod whose securityContext drops it): out of its
// bounding set, so the root the agent runs as cannot have it.
func ProbePathMTUWithoutNetRaw(t testing.TB, ns *Netns, target string) PathMTU {
	t.Helper()
	RequireCommand(t, "setpriv")
	return probePathMTU(t, ns, []string{"setpriv", "--bounding-set=-net_raw", "--"}, target)
}

func probePathMTU(t testing.TB, ns *Netns, wrapper []string, target string) PathMTU {
	t.Helper()
	agent := StartAgentVia(t, ns, wrapper, "--collector.disable-defaults", "--collector.pmtu", "--pmtu.target="+target,
		"--pmtu.interval=1h", "--pmtu.gap=10ms", "--pmtu.timeout=2s")
	defer StopAgent(t, agent)
	l := map[string]string{"target": target}
	Eventually(t, 90*time.Second, "a probe run finished", func() bool {
		_, ok := agent.Scrape(t).Value("netsonde_path_mtu_probe_timestamp_seconds", l)
		return ok
	})
	m := agent.Scrape(t)
	var r PathMTU
	r.PMTU, _ = m.Value("netsonde_path_mtu_bytes", l)
	r.Blackhole, _ = m.Value("netsonde_path_mtu_blackhole", l)
	r.Probes, _ = m.Value("netsonde_path_mtu_probes_total", l)
	return r
}

// CountEchoRequests makes R count the ICMPv6 echo requests to B it
// forwards or refuses (the IPv6 path-MTU probes); EchoRequests reads the
// count.
func (p *Path6) CountEchoRequests(t testing.TB) {
	t.Helper()
	RequireCommand(t, "nft")
	p.R.Exec(t, "nft", "add table inet probes; add chain inet probes countpre { type filter hook prerouting priority 0; }; "+
		"add rule inet probes countpre ip6 daddr "+Path6B+" icmpv6 type echo-request counter")
}

// EchoRequests is how many echo requests to B R has counted.
func (p *Path6) EchoRequests(t testing.TB) int {
	t.Helper()
	return nftCounter(t, p.R, "probes", "countpre")
}

// nftCounter reads the first counter of an inet chain in ns.
func nftCounter(t testing.TB, ns *Netns, table, chain string) int {
	t.Helper()
	out := ns.Exec(t, "nft", "list", "chain", "inet", table, chain)
	c := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if c == nil {
		t.Fatalf("no counter in chain inet %s %s:\n%s", table, chain, out)
	}
	n, _ := strconv.Atoi(c[1])
	return n
}
