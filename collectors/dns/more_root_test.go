package dns_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestNftDropsQueries: nft in the resolver's namespace drops 10 queries on
// their way in. They are 10 NETFILTER_DROP drops of DNS packets (where they
// were dropped: the resolver's namespace) and, at the client, 10 timeouts.
func TestNftDropsQueries(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	tp := newTopo(t)
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	a := startAgent(t, tp, []string{"--dns.timeout=1s"}, tp.client, tp.resolver)
	pc, pr := pod(t, tp.client), pod(t, tp.resolver)

	tp.resolver.Exec(t, "nft", "add table inet nsdtest; add chain inet nsdtest in { type filter hook input priority 0; }; add rule inet nsdtest in udp dport 53 drop")
	exchanges(t, tp.client, srv, "ok", 10, 0, -1)
	tp.resolver.Exec(t, "nft", "delete table inet nsdtest")
	exchanges(t, tp.client, srv, "ok", 5, 2*time.Second, 0)

	a.WaitSum(t, droppedMetric, with(pr, "reason", "NETFILTER_DROP"), 10)
	a.WaitSum(t, droppedMetric, nil, 10)
	a.WaitSum(t, queriesMetric, pc, 15)
	a.WaitSum(t, responsesMetric, with(pc, "rcode", "NOERROR"), 5)
	a.WaitSum(t, timeoutsMetric, pc, 10)
}

// TestSamePortAndIDInTwoNamespaces: two pods of one node, with the same
// source port and DNS ID, to one resolver pod. Client 1's query is
// answered, client 2's is not: the answer must close client 1's query
// only, and client 2's must time out. (Two pods of one node cannot share
// an address; TestSamePortAndIDInTwoNamespacesCgroupHook has them share
// that too.)
func TestSamePortAndIDInTwoNamespaces(t *testing.T) {
	tp := newTopo(t)
	c2, _ := testenv.Pod(t, tp.agent, "vclient2", "198.18.55.2", "198.18.55.1")
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	a := startAgent(t, tp, []string{"--dns.timeout=1s"}, tp.client, c2)
	samePortAndID(t, a, tp.client, clientIP, c2, "198.18.55.2")
}

// TestSamePortAndIDInTwoNamespacesCgroupHook: with the cgroup hook, two
// clients with the same address too, source port and DNS ID, each to its
// own resolver with the same address, are not mixed up.
func TestSamePortAndIDInTwoNamespacesCgroupHook(t *testing.T) {
	c1, r1 := testenv.NewNetns(t), testenv.NewNetns(t)
	c2, r2 := testenv.NewNetns(t), testenv.NewNetns(t)
	agentNS := testenv.NewNetns(t)
	const ip = "198.18.53.2"
	testenv.Veth(t, c1, r1, "dnsc", "dnsr", ip+"/24", resolverIP+"/24", 0)
	testenv.Veth(t, c2, r2, "dnsc", "dnsr", ip+"/24", resolverIP+"/24", 0)
	srv := resolverIP + ":53"
	startServer(t, r1, srv)
	startServer(t, r2, srv)
	a := startAgent(t, topo{agent: agentNS}, []string{"--dns.timeout=1s", "--dns.hook=cgroup"}, c1, c2)
	samePortAndID(t, a, c1, ip, c2, ip)
}

func samePortAndID(t *testing.T, a *testenv.Agent, c1 *testenv.Netns, ip1 string, c2 *testenv.Netns, ip2 string) {
	p1, p2 := pod(t, c1), pod(t, c2)

	const id, port = 0x4242, 40053
	send := func(ns *testenv.Netns, ip, name string) (int, error) {
		rcode := -1
		err := ns.Do(func() error {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: port}, &net.UDPAddr{IP: net.ParseIP(resolverIP), Port: 53})
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write(query(id, name, 1)); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
			buf := make([]byte, 512)
			if n, err := c.Read(buf); err == nil && n >= 12 {
				rcode = int(binary.BigEndian.Uint16(buf[2:]) & 0xf)
			}
			return nil
		})
		return rcode, err
	}
	done := make(chan error, 1)
	go func() { _, err := send(c2, ip2, "drop-1.test"); done <- err }()
	time.Sleep(50 * time.Millisecond) // c2's query is in flight first
	rc, err := send(c1, ip1, "slow-1.test")
	if err != nil || rc != 0 {
		t.Fatalf("client 1: rcode %d, %v", rc, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.WaitSum(t, queriesMetric, p1, 1)
	a.WaitSum(t, queriesMetric, p2, 1)
	a.WaitSum(t, responsesMetric, p1, 1)
	a.WaitSum(t, responsesMetric, p2, 0)
	a.WaitSum(t, durationMetric, p1, 1)
	a.WaitSum(t, timeoutsMetric, p1, 0)
	a.WaitSum(t, timeoutsMetric, p2, 1)
}

// TestMalformedAndUnmatched sends what a DNS server port can receive that
// is not a well-formed query, answers with another ID, and an answer to no
// query. The programs stay attached; nothing is counted as a response.
func TestMalformedAndUnmatched(t *testing.T) {
	tp := newTopo(t)
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	// A TCP listener on the resolver's port 53 that reads and discards.
	var ln net.Listener
	if err := tp.resolver.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", srv)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 70000)
				for {
					if _, err := c.Read(buf); err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	a := startAgent(t, tp, []string{"--dns.timeout=1s"}, tp.client)
	p := pod(t, tp.client)
	before := a.Scrape(t)

	loop := query(7, "x.test", 1)[:12]
	loop = append(loop, 0xc0, 12, 0, 1, 0, 1) // the name points at itself
	long := query(8, strings.Repeat(strings.Repeat("a", 63)+".", 5)+"test", 1)
	raw := [][]byte{
		{},                                    // 0-length
		{1, 2, 3, 4, 5},                       // truncated header
		loop,                                  // label loop: a query of type other
		long,                                  // name over 255 bytes: a query of type other
		answer(query(9, "drop-x.test", 1), 0), // an answer sent to the server port
	}
	err := tp.client.Do(func() error {
		c, err := net.Dial("udp", srv)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, b := range raw {
			if _, err := c.Write(b); err != nil {
				return err
			}
		}
		// TCP: a length of 65,535 that the segment does not carry.
		tc, err := net.Dial("tcp", srv)
		if err != nil {
			return err
		}
		defer tc.Close()
		msg := append([]byte{0xff, 0xff}, query(10, "ok-t.test", 1)...)
		_, err = tc.Write(msg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// An answer with another ID, and an answer nobody asked for.
	exchanges(t, tp.client, srv, "badid", 1, 500*time.Millisecond, 0) // the client reads it; the kernel does not match it
	var lport int
	err = tp.client.Do(func() error {
		l, err := net.ListenPacket("udp", clientIP+":0")
		if err != nil {
			return err
		}
		lport = l.LocalAddr().(*net.UDPAddr).Port
		go func() { time.Sleep(2 * time.Second); l.Close() }()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	spoofFrom(t, tp, lport)

	a.WaitSum(t, timeoutsMetric, p, 3) // the label loop, the long name, badid
	after := a.Scrape(t)
	d := func(metric string, labels map[string]string) float64 {
		return after.Sum(metric, labels) - before.Sum(metric, labels)
	}
	if got := d(queriesMetric, with(p, "qtype", "other")); got != 2 {
		t.Errorf("queries of type other: +%v, want +2 (label loop, long name)", got)
	}
	if got := d(queriesMetric, p); got != 3 {
		t.Errorf("queries: +%v, want +3", got)
	}
	if got := d(responsesMetric, nil); got != 0 {
		t.Errorf("responses: +%v, want 0", got)
	}
	if got := d("netsonde_dns_malformed_packets_total", nil); got != 4 {
		t.Errorf("malformed: +%v, want +4 (0-length, truncated, answer to a server, TCP 65,535)", got)
	}
	if got := d("netsonde_dns_unmatched_responses_total", nil); got != 2 {
		t.Errorf("unmatched answers: +%v, want +2 (other ID, unsolicited)", got)
	}
	if v, _ := after.Value("netsonde_bpf_program_attached", map[string]string{"program": "dns_tc"}); v != 1 {
		t.Errorf("dns_tc not attached")
	}
}

// spoofFrom sends an answer from port 53 to a client port no query came
// from. The test server holds resolverIP:53, so it goes out of a socket on
// a second address of the resolver.
func spoofFrom(t *testing.T, tp topo, lport int) {
	t.Helper()
	tp.resolver.Exec(t, "ip", "addr", "add", "198.18.53.3/24", "dev", "eth0")
	err := tp.resolver.Do(func() error {
		c, err := net.ListenPacket("udp", "198.18.53.3:53")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WriteTo(answer(query(0x1111, "ok-spoof.test", 1), 0), &net.UDPAddr{IP: net.ParseIP(clientIP), Port: lport})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// flooder sends queries that are never answered (drop-flood.test) from
// sockets it keeps open to the test's end, so that no later socket gets
// an earlier one's port, and its keys, back. Each socket sends the DNS
// IDs in a random order, each once: a random-ID flood in which every
// query is a new key of the in-flight table.
type flooder struct {
	conns []net.Conn
	ids   [][]int
	next  []int
}

func newFlooder(t *testing.T, ns *testenv.Netns, srv string, sockets int) *flooder {
	t.Helper()
	f := &flooder{}
	err := ns.Do(func() error {
		for range sockets {
			c, err := net.Dial("udp", srv)
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
			f.conns = append(f.conns, c)
			f.ids = append(f.ids, rand.Perm(1<<16))
			f.next = append(f.next, 0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// send sends n more queries, spread evenly over the sockets (n a multiple
// of their number), a millisecond's pause every 200.
func (f *flooder) send(t *testing.T, n int) {
	t.Helper()
	for s, c := range f.conns {
		for i := range n / len(f.conns) {
			id := f.ids[s][f.next[s]]
			f.next[s]++
			if _, err := c.Write(query(uint16(id), "drop-flood.test", 1)); err != nil {
				t.Fatal(err)
			}
			if i%200 == 199 {
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// TestFloodKeepsTableBounded: 100,000 queries that are never answered,
// with room for 1,024 in flight and so a quota of 256 for the pod. The
// pod never has more than its quota in the table, and every query ends
// as a timeout, an eviction or a refusal, exactly once (the kernel
// counts a query displaced before its timeout as evicted, one displaced
// after it as a timeout, one over the quota as refused, and the sweep the
// rest as timeouts), and the agent's memory stays small.
func TestFloodKeepsTableBounded(t *testing.T) {
	tp := newTopo(t)
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	a := startAgent(t, tp, []string{"--dns.timeout=1s", "--dns.max-inflight=1024"}, tp.client)
	p := pod(t, tp.client)
	const n, quota = 100000, 1024 / 4
	newFlooder(t, tp.client, srv, 4).send(t, n)
	a.WaitSum(t, queriesMetric, p, n)
	// CPUs that check the quota at the same moment may each pass it.
	if v, _ := a.Scrape(t).Value("netsonde_dns_inflight_queries", nil); v > quota+float64(runtime.NumCPU()) {
		t.Errorf("%v queries in flight, with a quota of %d", v, quota)
	}
	testenv.Eventually(t, 10*time.Second, "every query closed", func() bool {
		m := a.Scrape(t)
		v, _ := m.Value("netsonde_dns_inflight_queries", nil)
		return v == 0 && m.Sum(timeoutsMetric, p)+m.Sum("netsonde_dns_inflight_evictions_total", nil)+m.Sum(refusedMetric, p) == n
	})
	m := a.Scrape(t)
	ev := m.Sum("netsonde_dns_inflight_evictions_total", nil)
	to := m.Sum(timeoutsMetric, p)
	ref := m.Sum(refusedMetric, p)
	if to == 0 || ref == 0 {
		t.Errorf("timeouts %v, refused %v: want both", to, ref)
	}
	t.Logf("100,000 unanswered queries: %v timeouts, %v evictions, %v refused", to, ev, ref)
	rss := vmRSS(t, a.Cmd.Process.Pid)
	t.Logf("agent RSS %d KiB", rss)
	if rss > 100*1024 {
		t.Errorf("agent RSS %d KiB after the flood, want under 100 MiB", rss)
	}
}

// TestFloodSparesOtherPods (issue 24): one pod floods a resolver that
// never answers with 100,000 random-ID queries, and in the middle of it
// another pod sends 20 queries that are not answered either. The
// flooder gets its quota of the table (2,048 of 8,192) and is refused the
// rest; the other pod's queries, fewer in flight than the flooder's, are
// never displaced by it, so they are its 20 timeouts exactly. Without the
// quota the flood pushed them out of the table before their timeout, and
// they were counted as nothing but evictions.
func TestFloodSparesOtherPods(t *testing.T) { testFloodSparesOtherPods(t) }

// TestFloodSparesOtherPodsCgroupHook: the same with the cgroup hook, whose
// owners are network namespaces.
func TestFloodSparesOtherPodsCgroupHook(t *testing.T) {
	testFloodSparesOtherPods(t, "--dns.hook=cgroup")
}

func testFloodSparesOtherPods(t *testing.T, args ...string) {
	tp := newTopo(t)
	other, _ := testenv.Pod(t, tp.agent, "vclient2", "198.18.55.2", "198.18.55.1")
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	a := startAgent(t, tp, append([]string{"--dns.timeout=1s", "--dns.max-inflight=8192"}, args...), tp.client, other)
	pf, po := pod(t, tp.client), pod(t, other)
	const n, victims = 100000, 20

	f := newFlooder(t, tp.client, srv, 4)
	f.send(t, n/2)
	err := other.Do(func() error {
		c, err := net.Dial("udp", srv)
		if err != nil {
			return err
		}
		defer c.Close()
		for id := range victims {
			if _, err := c.Write(query(uint16(id), "drop-victim.test", 1)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.send(t, n/2)

	a.WaitSum(t, queriesMetric, pf, n)
	a.WaitSum(t, queriesMetric, po, victims)
	a.WaitSum(t, timeoutsMetric, po, victims)
	testenv.Eventually(t, 10*time.Second, "every query closed", func() bool {
		m := a.Scrape(t)
		v, _ := m.Value("netsonde_dns_inflight_queries", nil)
		return v == 0 && m.Sum(timeoutsMetric, pf)+m.Sum("netsonde_dns_inflight_evictions_total", nil)+m.Sum(refusedMetric, pf) == n
	})
	m := a.Scrape(t)
	if v := m.Sum(refusedMetric, po); v != 0 {
		t.Errorf("%v of the other pod's queries refused, want none", v)
	}
	if v := m.Sum(refusedMetric, pf); v == 0 {
		t.Error("none of the flood refused: the quota did not bite")
	}
	a.WaitSum(t, timeoutsMetric, po, victims)
	t.Logf("the flood: %v timeouts, %v evictions, %v refused; the other pod: %v timeouts", m.Sum(timeoutsMetric, pf),
		m.Sum("netsonde_dns_inflight_evictions_total", nil), m.Sum(refusedMetric, pf), m.Sum(timeoutsMetric, po))
}

// vmRSS returns a process's resident set in KiB (of the agent, the child
// of nsenter).
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	kids, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(pid), "children"))
	if f := strings.Fields(string(kids)); len(f) > 0 {
		pid, _ = strconv.Atoi(f[0])
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestGlibcAndTCP: getent through glibc's stub resolver (A and AAAA on one
// socket), and dig over TCP, whose segments carry whole messages.
func TestGlibcAndTCP(t *testing.T) {
	testenv.RequireCommand(t, "dig", "getent")
	tp := newTopo(t)
	startDnsmasq(t, tp.resolver)
	// ip netns exec bind-mounts /etc/netns/NAME/resolv.conf over
	// /etc/resolv.conf: glibc in the client asks the test's resolver.
	dir := filepath.Join("/etc/netns", tp.client.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+resolverIP+"\noptions attempts:1 timeout:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, tp, nil, tp.client, tp.resolver)
	p := pod(t, tp.client)
	for i := 0; i < 3; i++ {
		out := tp.client.Exec(t, "getent", "hosts", "ok.test")
		if !strings.Contains(out, "198.18.99.1") {
			t.Fatalf("getent hosts ok.test: %q", out)
		}
	}
	for i := 0; i < 4; i++ {
		if st := dig(t, tp.client, "+tcp", "nx.test", "TXT"); st != "NXDOMAIN" {
			t.Fatalf("dig +tcp: %s", st)
		}
	}
	// glibc asks A and AAAA for each lookup; dnsmasq, with an IPv4
	// address for the name and no upstream, refuses AAAA.
	a.WaitSum(t, queriesMetric, with(p, "qtype", "A"), 3)
	a.WaitSum(t, queriesMetric, with(p, "qtype", "AAAA"), 3)
	a.WaitSum(t, queriesMetric, with(p, "qtype", "TXT"), 4)
	a.WaitSum(t, responsesMetric, with(p, "rcode", "NOERROR"), 3)
	a.WaitSum(t, responsesMetric, with(p, "rcode", "REFUSED"), 3)
	a.WaitSum(t, responsesMetric, with(p, "rcode", "NXDOMAIN"), 4)
	// The resolver is watched too: its side of each exchange is not a
	// client's, so every exchange is counted once.
	a.WaitSum(t, queriesMetric, nil, 10)
	a.WaitSum(t, responsesMetric, nil, 10)
	a.WaitSum(t, "netsonde_dns_malformed_packets_total", nil, 0)
}

// TestServfailAndManyNames: SERVFAIL counted exactly, and 5,000 distinct
// names add no series (no name label).
func TestServfailAndManyNames(t *testing.T) {
	tp := newTopo(t)
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	a := startAgent(t, tp, nil, tp.client)
	p := pod(t, tp.client)
	exchanges(t, tp.client, srv, "fail", 12, 2*time.Second, 2)
	exchanges(t, tp.client, srv, "ok", 10, 2*time.Second, 0)
	a.WaitSum(t, responsesMetric, with(p, "rcode", "SERVFAIL"), 12)
	series := func() int {
		n := 0
		for _, f := range a.Scrape(t) {
			if strings.HasPrefix(f.GetName(), "netsonde_dns_") {
				n += len(f.GetMetric())
			}
		}
		return n
	}
	a.WaitSum(t, responsesMetric, with(p, "rcode", "NOERROR"), 10)
	before := series()
	exchanges(t, tp.client, srv, "ok", 5000, 2*time.Second, 0)
	a.WaitSum(t, responsesMetric, with(p, "rcode", "NOERROR"), 5010)
	if after := series(); after != before {
		t.Errorf("netsonde_dns_* series: %d before 5,000 names, %d after", before, after)
	}
}

// TestSeriesOfDeletedNamespaceGo: a pod's namespace is deleted; its
// series end after --dns.forget-after, and its counters leave the maps.
func TestSeriesOfDeletedNamespaceGo(t *testing.T) {
	testenv.RequireRoot(t)
	tp := newTopo(t)
	// Made by hand, not by NewNetns: the test deletes it itself, and
	// with it its veth.
	client := &testenv.Netns{Name: testenv.RandomName("nsd-")}
	testenv.Run(t, "ip", "netns", "add", client.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", client.Name).Run() })
	testenv.Veth(t, client, tp.agent, "eth0", "vgone", "198.18.56.2/24", "198.18.56.1/24", 0)
	client.Exec(t, "ip", "route", "add", "default", "via", "198.18.56.1")
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	a := startAgent(t, tp, []string{"--dns.forget-after=1s", "--dns.timeout=1s"}, client)
	p := pod(t, client)
	exchanges(t, client, srv, "ok", 3, 2*time.Second, 0)
	exchanges(t, client, srv, "drop", 2, 0, -1)
	a.WaitSum(t, queriesMetric, p, 5)
	a.WaitSum(t, timeoutsMetric, p, 2)
	testenv.Run(t, "ip", "netns", "del", client.Name)
	defer func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", a.Log)
		}
	}()
	testenv.Eventually(t, 15*time.Second, "the deleted namespace's series gone", func() bool {
		// Counts are keyed by the namespace's cookie: a new namespace
		// that gets the freed inode (other tests make them all the time)
		// is another namespace, and does not keep these alive.
		m := a.Scrape(t)
		for _, name := range []string{queriesMetric, responsesMetric, timeoutsMetric, durationMetric} {
			if len(m.Series(name, p)) > 0 {
				return false
			}
		}
		return true
	})
}

// TestHostClientHasNoPod: a client in the agent's own network namespace
// (the host's, for the DaemonSet: hostNetwork pods and node processes) is
// counted with empty namespace and pod, whether its resolver is a pod or
// on the node's loopback.
func TestHostClientHasNoPod(t *testing.T) {
	testHostClientHasNoPod(t)
}

// TestHostClientHasNoPodCgroupHook is the same with the cgroup hook.
func TestHostClientHasNoPodCgroupHook(t *testing.T) { testHostClientHasNoPod(t, "--dns.hook=cgroup") }

func testHostClientHasNoPod(t *testing.T, args ...string) {
	tp := newTopo(t)
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	a := startAgent(t, tp, append([]string{"--dns.timeout=1s"}, args...), tp.agent)
	host := map[string]string{"namespace": "", "pod": ""}
	exchanges(t, tp.agent, srv, "ok", 4, 2*time.Second, 0)
	// And to a resolver of the node itself, over its loopback (a
	// node-local cache, systemd-resolved's 127.0.0.53).
	tp.agent.Exec(t, "ip", "link", "set", "lo", "up")
	startServer(t, tp.agent, "127.0.0.1:53")
	exchanges(t, tp.agent, "127.0.0.1:53", "ok", 3, 2*time.Second, 0)
	exchanges(t, tp.agent, "127.0.0.1:53", "drop", 2, 0, -1)
	a.WaitSum(t, queriesMetric, host, 9)
	a.WaitSum(t, responsesMetric, with(host, "rcode", "NOERROR"), 7)
	a.WaitSum(t, queriesMetric, nil, 9)
	a.WaitSum(t, timeoutsMetric, host, 2)
}

// TestTopFailingNames: with --dns.top-failing-names=2, the two names with
// the most timeouts plus NXDOMAIN answers are shown with exact counts, and
// no other name.
func TestTopFailingNames(t *testing.T) {
	tp := newTopo(t)
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	a := startAgent(t, tp, []string{"--dns.timeout=1s", "--dns.top-failing-names=2"}, tp.client)
	same := func(name string, n int, wait time.Duration, want int) {
		for i := 0; i < n; i++ {
			rc, err := exchange(tp.client, srv, uint16(rand.Uint32()), name, 1, wait)
			if err != nil || rc != want {
				t.Fatalf("%s: rcode %d, %v", name, rc, err)
			}
		}
	}
	same("drop-1.test", 5, 0, -1)
	same("nx-1.test", 3, time.Second, 3)
	same("nx-2.test", 1, time.Second, 3)
	same("ok-1.test", 4, time.Second, 0)
	const m = "netsonde_dns_top_failing_names"
	a.WaitSum(t, m, map[string]string{"name": "drop-1.test", "result": "timeout"}, 5)
	a.WaitSum(t, m, map[string]string{"name": "drop-1.test", "result": "nxdomain"}, 0)
	a.WaitSum(t, m, map[string]string{"name": "nx-1.test", "result": "nxdomain"}, 3)
	a.WaitSum(t, m, map[string]string{"name": "nx-1.test", "result": "timeout"}, 0)
	if s := a.Scrape(t).Series(m, nil); len(s) != 4 {
		t.Errorf("%d series of %s, want 4 (two names, two results): %v", len(s), m, s)
	}
}

// TestIPv6AndExtraPort: queries over IPv6, and to a server on a port given
// with --dns.ports, are counted like the others; a server on a port not
// given is not DNS to netsonde.
func TestIPv6AndExtraPort(t *testing.T) {
	// Two pods of a node, on two /112s of fd00:5e::/64, routed by it.
	tp := topo{agent: testenv.NewNetns(t), client: testenv.NewNetns(t), resolver: testenv.NewNetns(t)}
	client, resolver := tp.client, tp.resolver
	for _, x := range []struct {
		pod          *testenv.Netns
		hostIf, addr string
		gw           string
	}{{client, "vclient", "fd00:5e::100:2", "fd00:5e::100:1"}, {resolver, "vresolver", "fd00:5e::1", "fd00:5e::fffe"}} {
		testenv.Run(t, "ip", "link", "add", "eth0", "netns", x.pod.Name, "type", "veth", "peer", "name", x.hostIf, "netns", tp.agent.Name)
		x.pod.Exec(t, "ip", "addr", "add", x.addr+"/112", "dev", "eth0", "nodad")
		tp.agent.Exec(t, "ip", "addr", "add", x.gw+"/112", "dev", x.hostIf, "nodad")
		x.pod.Exec(t, "ip", "link", "set", "eth0", "up")
		tp.agent.Exec(t, "ip", "link", "set", x.hostIf, "up")
		x.pod.Exec(t, "ip", "-6", "route", "add", "default", "via", x.gw)
	}
	tp.agent.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	// Right after the link comes up, the first IPv6 neighbour
	// solicitation can go unanswered and the next is sent a second later:
	// the first answers would then come after this test's 1 s timeout,
	// and rightly count as timeouts. The path is resolved first.
	testenv.Eventually(t, 5*time.Second, "IPv6 path up", func() bool {
		return client.Command("ping", "-6", "-c1", "-W1", "fd00:5e::1").Run() == nil
	})
	startServer(t, resolver, "[fd00:5e::1]:53")
	startServer(t, resolver, "[fd00:5e::1]:5353")
	startServer(t, resolver, "[fd00:5e::1]:5354")
	a := startAgent(t, tp, []string{"--dns.timeout=1s", "--dns.ports=5353"}, client)
	p := pod(t, client)
	exchanges(t, client, "[fd00:5e::1]:53", "ok", 5, 2*time.Second, 0)
	exchanges(t, client, "[fd00:5e::1]:5353", "nx", 3, 2*time.Second, 3)
	exchanges(t, client, "[fd00:5e::1]:5354", "ok", 4, 2*time.Second, 0)
	exchanges(t, client, "[fd00:5e::1]:53", "drop", 2, 0, -1)
	defer func() {
		if t.Failed() {
			_, body := a.Get(t, "/metrics")
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, "netsonde_dns_") && !strings.Contains(l, "_bucket") {
					t.Log(l)
				}
			}
		}
	}()
	a.WaitSum(t, queriesMetric, p, 10)
	a.WaitSum(t, responsesMetric, with(p, "rcode", "NOERROR"), 5)
	a.WaitSum(t, responsesMetric, with(p, "rcode", "NXDOMAIN"), 3)
	a.WaitSum(t, timeoutsMetric, p, 2)
}

// TestPodAddedAfterStart: the TC programs follow the node's interfaces. A
// pod whose veth appears after the agent started is watched as soon as
// netsonde_dns_interfaces{role="pod"} counts it, and its DNS is then
// counted exactly; when the pod goes, its veth leaves the count.
func TestPodAddedAfterStart(t *testing.T) {
	tp := newTopo(t)
	srv := resolverIP + ":53"
	startServer(t, tp.resolver, srv)
	// --dns.only-netns names a namespace only to label pods by cookie.
	a := startAgent(t, tp, []string{"--dns.timeout=1s"}, tp.client)
	role := map[string]string{"role": "pod"}
	a.WaitSum(t, "netsonde_dns_interfaces", role, 2)
	late := &testenv.Netns{Name: testenv.RandomName("nsl-")}
	testenv.Run(t, "ip", "netns", "add", late.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", late.Name).Run() })
	testenv.Veth(t, late, tp.agent, "eth0", "vlate", "198.18.57.2/24", "198.18.57.1/24", 0)
	late.Exec(t, "ip", "route", "add", "default", "via", "198.18.57.1")
	a.WaitSum(t, "netsonde_dns_interfaces", role, 3)
	p := map[string]string{"namespace": "netns", "pod": strconv.FormatUint(late.Cookie(t), 10)}
	exchanges(t, late, srv, "ok", 7, 2*time.Second, 0)
	exchanges(t, late, srv, "drop", 2, 0, -1)
	a.WaitSum(t, queriesMetric, p, 9)
	a.WaitSum(t, responsesMetric, with(p, "rcode", "NOERROR"), 7)
	a.WaitSum(t, timeoutsMetric, p, 2)
	testenv.Run(t, "ip", "netns", "del", late.Name)
	a.WaitSum(t, "netsonde_dns_interfaces", role, 2)
}
