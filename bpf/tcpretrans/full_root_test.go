package tcpretrans_test

import (
	"testing"
	"time"

	"github.com/netsonde/netsonde/bpf/tcpretrans"
	"github.com/netsonde/netsonde/internal/testenv"
)

// synRetransmits connects from ns to a host that drops SYNs, with one SYN
// retry, and returns the namespace's TCPSynRetrans delta: the kernel's own
// count of what the program saw.
func synRetransmits(t *testing.T, ns *testenv.Netns, dst string) float64 {
	t.Helper()
	before := testenv.Netstat(t, ns, "netstat", "TcpExt", "TCPSynRetrans")
	err := ns.Do(func() error {
		c, err := testenv.SYNDialer(20*time.Second, 1).Dial("tcp4", dst)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("connect to a host dropping SYNs succeeded")
	}
	n := testenv.Netstat(t, ns, "netstat", "TcpExt", "TCPSynRetrans") - before
	if n < 1 {
		t.Fatalf("kernel counted %v SYN retransmits, want at least 1", n)
	}
	return n
}

// With room for one key, the first namespace's retransmits take it and
// every retransmit of a second namespace is counted as full, exactly.
func TestMapFullCounted(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	a, b, srv := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, srv, "fa0", "fs0", "198.18.103.1/24", "198.18.103.2/24", 0)
	testenv.Veth(t, b, srv, "fb0", "fs1", "198.18.104.1/24", "198.18.104.2/24", 0)
	testenv.DropSYNs(t, srv, 80)
	c, err := tcpretrans.Load(tcpretrans.Options{MapSizes: map[string]uint32{"retrans": 1},
		OnlyNetns: []uint64{a.Cookie(t), b.Cookie(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inA := synRetransmits(t, a, "198.18.103.2:80")
	inB := synRetransmits(t, b, "198.18.104.2:80")

	counts, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	var counted float64
	for k, v := range counts {
		if k.Netns != a.Cookie(t) {
			t.Errorf("key %+v counted: the only slot was namespace a's", k)
		}
		counted += float64(v)
	}
	full, err := c.Full()
	if err != nil {
		t.Fatal(err)
	}
	if counted != inA || float64(full) != inB {
		t.Errorf("counted %v, full %d; want namespace a's %v retransmits counted and namespace b's %v full", counted, full, inA, inB)
	}
	t.Logf("namespace a: %v retransmits counted; namespace b: %v retransmits, %d counted as full", inA, inB, full)
}
