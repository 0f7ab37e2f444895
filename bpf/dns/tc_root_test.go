package dns

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestTCProgramsInKernel runs the TC programs on frames by
// BPF_PROG_TEST_RUN, which gives them the loopback device (ifindex 1) and
// a socket: a query into dns_tc_ingress of an interface marked a pod's is
// the pod's, keyed by the interface, and its answer out of dns_tc_egress
// closes it; unmarked, the same query coming in is nobody's, and one
// going out (a socket of this namespace sent it) is the host's, key 0.
// Every run returns -1, TCX_NEXT.
func TestTCProgramsInKernel(t *testing.T) {
	testenv.RequireRoot(t)
	p, err := Load(Options{Hook: HookTC})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	run := func(name string, pkt []byte) {
		t.Helper()
		ret, err := p.tc.progs[name].Run(&ebpf.RunOptions{Data: pkt})
		if err != nil {
			t.Fatalf("test run: %v", err)
		}
		if int32(ret) != -1 {
			t.Fatalf("%s returned %d, want -1 (TCX_NEXT)", name, int32(ret))
		}
	}
	answerTo := func(id uint16) []byte {
		ans := dnsQuery(id, "ok.test", 1)
		binary.BigEndian.PutUint16(ans[2:], 0x8000) // QR, NOERROR
		pkt := packet(53, 40000, ans)
		copy(pkt[14+12:], []byte{198, 18, 53, 1})
		copy(pkt[14+16:], []byte{198, 18, 53, 2})
		return pkt
	}
	if err := p.maps.Ifaces.Put(uint32(1), IfacePod); err != nil {
		t.Fatal(err)
	}
	run(bpfProgDnsTcIngress, packet(40000, 53, dnsQuery(1, "ok.test", 1)))
	// Not a query on this side: an answer leaving a pod, and non-DNS.
	run(bpfProgDnsTcIngress, packet(40000, 80, dnsQuery(3, "ok.test", 1)))
	run(bpfProgDnsTcEgress, answerTo(1))
	if err := p.maps.Ifaces.Put(uint32(1), uint32(0)); err != nil {
		t.Fatal(err)
	}
	run(bpfProgDnsTcIngress, packet(40000, 53, dnsQuery(2, "ok.test", 28)))
	run(bpfProgDnsTcEgress, packet(40000, 53, dnsQuery(4, "ok.test", 28)))
	run(bpfProgDnsTcIngress, answerTo(4))

	c, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	wantQ := map[QueryKey]uint64{{Owner: 1, Qtype: 1}: 1, {Owner: 0, Qtype: 28}: 1}
	if len(c.Queries) != len(wantQ) {
		t.Errorf("queries %v, want %v", c.Queries, wantQ)
	}
	for k, v := range wantQ {
		if c.Queries[k] != v {
			t.Errorf("queries %v, want %v", c.Queries, wantQ)
		}
	}
	wantR := map[RespKey]uint64{{Owner: 1}: 1, {Owner: 0}: 1}
	if len(c.Responses) != len(wantR) || c.Responses[RespKey{Owner: 1}] != 1 || c.Responses[RespKey{Owner: 0}] != 1 {
		t.Errorf("answers %v, want %v", c.Responses, wantR)
	}
	if n := c.Stats[StatAnswered]; n != 2 {
		t.Errorf("answered: %d, want 2", n)
	}
	if n := c.Stats[StatUnmatched]; n != 0 {
		t.Errorf("unmatched: %d, want 0", n)
	}
}

// TestTCOnANode: a node namespace with two pods behind veths (a client
// and a dnsmasq), routing between them, the TC programs on each of its
// interfaces as the agent puts them. 100 queries of the client pod and 40
// of a socket of the node itself, each answered before the next, are
// counted exactly: 100 queries and NOERROR answers under the client
// pod's veth, 40 under the host (key 0), nothing under the resolver pod's
// veth, nothing unmatched, malformed or left in flight.
func TestTCOnANode(t *testing.T) { testTCOnANode(t, false, AttachTC) }

// TestTCOnANodeByTCX is TestTCOnANode with the programs attached by TCX.
func TestTCOnANodeByTCX(t *testing.T) { testTCOnANode(t, false, AttachTCX) }

// TestTCOnABridge is TestTCOnANode with the pods' veths ports of a bridge
// that has the node's address, as the bridge CNI plugin wires them: the
// node's own queries leave through the bridge and then through the
// resolver pod's veth, and are counted once.
func TestTCOnABridge(t *testing.T) { testTCOnANode(t, true, AttachTC) }

func testTCOnANode(t *testing.T, bridge bool, attach string) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "dnsmasq")
	serverIP := "198.18.95.2"
	node := testenv.NewNetns(t)
	var client, server *testenv.Netns
	var vpa, vpb int
	if bridge {
		serverIP = "198.18.96.3"
		node.Exec(t, "ip", "link", "add", "br0", "type", "bridge")
		node.Exec(t, "ip", "addr", "add", "198.18.96.1/24", "dev", "br0")
		node.Exec(t, "ip", "link", "set", "br0", "up")
		port := func(hostIf, podIP string) (*testenv.Netns, int) {
			pod := testenv.NewNetns(t)
			testenv.Run(t, "ip", "link", "add", "eth0", "netns", pod.Name, "type", "veth", "peer", "name", hostIf, "netns", node.Name)
			pod.Exec(t, "ip", "addr", "add", podIP+"/24", "dev", "eth0")
			pod.Exec(t, "ip", "link", "set", "eth0", "up")
			node.Exec(t, "ip", "link", "set", hostIf, "master", "br0", "up")
			return pod, node.IfIndex(t, hostIf)
		}
		client, vpa = port("vpa", "198.18.96.2")
		server, vpb = port("vpb", serverIP)
	} else {
		client, vpa = testenv.Pod(t, node, "vpa", "198.18.94.2", "198.18.94.1")
		server, vpb = testenv.Pod(t, node, "vpb", serverIP, "198.18.95.1")
	}

	dnsmasq := server.Command("dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
		"--listen-address="+serverIP, "--bind-interfaces", "--user=root", "--pid-file=",
		"--address=/ok.test/198.18.99.1", "--cache-size=0")
	out := &strings.Builder{}
	dnsmasq.Stdout, dnsmasq.Stderr = out, out
	if err := dnsmasq.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		dnsmasq.Process.Kill()
		dnsmasq.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", out)
		}
	})
	dial := func(ns *testenv.Netns) *net.UDPConn {
		var conn *net.UDPConn
		if err := ns.Do(func() error {
			var err error
			conn, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(serverIP), Port: 53})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	fromPod, fromHost := dial(client), dial(node)
	// ask sends one query and waits for its answer, once: a retry would
	// be another query to count.
	ask := func(conn *net.UDPConn, id uint16) error {
		if _, err := conn.Write(dnsQuery(id, "ok.test", 1)); err != nil {
			return err
		}
		buf := make([]byte, 512)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return err
			}
			if n >= 12 && binary.BigEndian.Uint16(buf) == id {
				if rcode := buf[3] & 0xf; buf[2]&0x80 == 0 || rcode != 0 {
					return errors.New("not a NOERROR answer")
				}
				return nil
			}
		}
	}
	// Answered before the programs are attached: not counted.
	testenv.Eventually(t, 5*time.Second, "dnsmasq answers", func() bool { return ask(fromPod, 1) == nil && ask(fromHost, 1) == nil })

	p, err := Load(Options{Hook: HookTC, Attach: attach})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := node.Do(func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			flags := uint32(0)
			if i.Index == vpa || i.Index == vpb {
				flags = IfacePod
				if bridge {
					flags |= IfaceEnslaved
				}
			}
			if err := p.Interfaces().Attach(i.Index, Iface{Flags: flags}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("attach in the node: %v", err)
	}
	if h := p.Hooks()[ProgramInterfaces]; h != attach {
		t.Fatalf("%s attached by %q, want %s", ProgramInterfaces, h, attach)
	}
	if h := p.Hooks()[ProgramEgress]; h != "" {
		t.Fatalf("cgroup program %s attached by %q with the TC hook", ProgramEgress, h)
	}

	const podN, hostN = 100, 40
	for i := 0; i < podN; i++ {
		if err := ask(fromPod, uint16(1000+i)); err != nil {
			t.Fatalf("pod's query %d: %v", i, err)
		}
	}
	for i := 0; i < hostN; i++ {
		if err := ask(fromHost, uint16(2000+i)); err != nil {
			t.Fatalf("host's query %d: %v", i, err)
		}
	}
	c, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	wantQ := map[QueryKey]uint64{{Owner: uint64(vpa), Qtype: 1}: podN, {Owner: 0, Qtype: 1}: hostN}
	if len(c.Queries) != 2 || c.Queries[QueryKey{Owner: uint64(vpa), Qtype: 1}] != podN || c.Queries[QueryKey{Qtype: 1}] != hostN {
		t.Errorf("queries %v, want %v (vpa %d, vpb %d)", c.Queries, wantQ, vpa, vpb)
	}
	if len(c.Responses) != 2 || c.Responses[RespKey{Owner: uint64(vpa)}] != podN || c.Responses[RespKey{}] != hostN {
		t.Errorf("answers %v, want %d NOERROR under vpa (%d) and %d under the host", c.Responses, podN, vpa, hostN)
	}
	// A sweep with a long timeout closes nothing and counts the slots
	// in use.
	sw, err := p.Sweep(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Live != 0 {
		t.Errorf("%d queries in flight after every answer, want 0", sw.Live)
	}
	for _, s := range []struct {
		name string
		idx  int
		want uint64
	}{
		{"tracked", StatTracked, podN + hostN}, {"answered", StatAnswered, podN + hostN}, {"unmatched", StatUnmatched, 0},
		{"malformed", StatMalformed, 0}, {"retransmitted", StatRetransmitted, 0}, {"late", StatLate, 0},
		{"not tracked", StatNotTracked, 0}, {"evicted", StatEvicted, 0},
	} {
		if c.Stats[s.idx] != s.want {
			t.Errorf("%s: %d, want %d", s.name, c.Stats[s.idx], s.want)
		}
	}
}
