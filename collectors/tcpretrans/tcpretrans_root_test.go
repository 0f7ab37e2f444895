package tcpretrans_test

import (
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

func retrans(t *testing.T, a *testenv.Agent, state string) float64 {
	return a.Scrape(t).Sum("netsonde_tcp_retransmits_total", map[string]string{"state": state, "family": "ipv4"})
}

// A connect to a host that drops SYNs, with the SYN retries set to 2 on
// the socket: exactly 2 SYN_SENT retransmits, as the kernel's own
// TCPSynRetrans says, and the connect fails.
func TestSynSentRetransmits(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "ta0", "tb0", "198.18.80.1/24", "198.18.80.2/24", 0)
	testenv.DropSYNs(t, b, 80)
	agent := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.tcpretrans", "--tcpretrans.netns=own")
	before := testenv.Netstat(t, a, "netstat", "TcpExt", "TCPSynRetrans")
	failBefore := testenv.Netstat(t, a, "netstat", "TcpExt", "TCPRetransFail")
	// Once in about 50 loaded runs netsonde has counted one SYN retransmit
	// fewer than TCPSynRetrans, with TCPRetransFail unchanged (every send
	// went out). Not yet explained: on failure, say what would tell the
	// ways a tracing program loses an event apart: a failed insert of the
	// map's first key (WaitSum prints netsonde_bpf_map_full_total), the
	// kernel skipping a nested run (bpftool's recursion_misses), a send
	// that failed after the kernel counted it (TCPRetransFail).
	defer func() {
		if !t.Failed() {
			return
		}
		t.Logf("TCPRetransFail +%v", testenv.Netstat(t, a, "netstat", "TcpExt", "TCPRetransFail")-failBefore)
		out, _ := exec.Command("bpftool", "prog", "show").CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "retransmit") {
				t.Logf("bpftool: %s", l)
			}
		}
	}()

	err := a.Do(func() error {
		c, err := testenv.SYNDialer(20*time.Second, 2).Dial("tcp4", "198.18.80.2:80")
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("connect to a host dropping SYNs succeeded")
	}
	kernel := testenv.Netstat(t, a, "netstat", "TcpExt", "TCPSynRetrans") - before
	// TCP_SYNCNT=2 budgets the time of 2 exponential retries (1+2+4 s), but
	// since 6.4 the first tcp_syn_linear_timeouts retries wait 1 s each, so
	// more of them fit: the kernel's own count is the yardstick.
	if kernel < 2 {
		t.Fatalf("kernel counted %v SYN retransmits, want at least 2", kernel)
	}
	t.Logf("%v SYN retransmits", kernel)
	agent.WaitSum(t, "netsonde_tcp_retransmits_total", map[string]string{"state": "SYN_SENT", "family": "ipv4"}, kernel)
}

// A TCP stream while nftables drops every 20th packet on the receiver: the
// retransmits netsonde counts equal the sender namespace's RetransSegs
// delta exactly. TCP always builds GSO skbs, and one retransmitted skb may
// carry several segments, so the program adds the skb's segment count, as
// RetransSegs does, rather than 1 per tracepoint hit.
func TestStreamRetransmitsMatchKernel(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "sa0", "sb0", "198.18.81.1/24", "198.18.81.2/24", 0)
	// Every 20th, not one in 20 at random: the veth carries TSO skbs of
	// up to 64 KiB whole, so 4 MiB can be as few as 64 packets, and a
	// random 5% missed them all in about one run in 30 (fresh-node did).
	// The 20th, not the first, so the SYN goes through.
	b.Exec(t, "nft", "add table inet loss; add chain inet loss in { type filter hook input priority 0; }; add rule inet loss in tcp dport 5001 numgen inc mod 20 == 19 drop")
	agent := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.tcpretrans", "--tcpretrans.netns=own")

	var ln net.Listener
	if err := b.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "198.18.81.2:5001")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()

	before := testenv.Netstat(t, a, "snmp", "Tcp", "RetransSegs")
	const size = 4 << 20
	if err := a.Do(func() error {
		c, err := net.Dial("tcp4", "198.18.81.2:5001")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(make([]byte, size))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != size {
		t.Fatalf("receiver got %d bytes, want %d", n, size)
	}
	kernel := testenv.Netstat(t, a, "snmp", "Tcp", "RetransSegs") - before
	if kernel == 0 {
		t.Fatal("no retransmits: the loss rule did not bite")
	}
	// Since 6.13 the tracepoint sits in __tcp_retransmit_skb, which tail
	// loss probes go through too, and says whether the send failed; both
	// the kernel's count and netsonde's are of segments actually resent.
	var ours float64
	deadline := time.Now().Add(2 * time.Second)
	for ours != kernel && time.Now().Before(deadline) {
		ours = agent.Scrape(t).Sum("netsonde_tcp_retransmits_total", map[string]string{"family": "ipv4"})
		time.Sleep(50 * time.Millisecond)
	}
	if ours != kernel {
		t.Fatalf("netsonde counted %v retransmitted segments, RetransSegs rose by %v", ours, kernel)
	}
	t.Logf("netsonde %v, RetransSegs %v", ours, kernel)
	t.Logf("%v retransmits, %v of them ESTABLISHED", kernel, retrans(t, agent, "ESTABLISHED"))
}

// Without the tracepoints, the collector is down with a reason and the
// others keep serving.
func TestDownWithoutTracepoints(t *testing.T) {
	ns := testenv.NewNetns(t)
	agent := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.tcpretrans", "--collector.mtu", "--tcpretrans.attach=tracepoint", "--tcpretrans.tracepoint-group=nonexistent")
	m := agent.Scrape(t)
	if v, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "tcpretrans", "reason": "attach_failed"}); !ok || v != 0 {
		t.Fatalf("tcpretrans should be down with attach_failed:\n%s", agent.Log)
	}
	if v, _ := m.Value("netsonde_collector_up", map[string]string{"collector": "mtu"}); v != 1 {
		t.Fatal("mtu should be up")
	}
}
