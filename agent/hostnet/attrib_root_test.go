package hostnet

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/internal/testenv"
)

// onlySource is the kernel's namespaces, limited to the pins a test made:
// the machine's other namespaces (other tests') are not its business.
type onlySource struct {
	KernelSource
	pins map[string]bool
}

func (o onlySource) Namespaces() map[uint64]string {
	out := map[uint64]string{}
	for ino, p := range o.KernelSource.Namespaces() {
		if o.pins[filepath.Base(p)] {
			out[ino] = p
		}
	}
	return out
}

// A pod with NET_ADMIN in its own namespace adds its neighbour's address:
// two pods wired as a routing CNI (Calico, ptp, AWS VPC) wires them, each
// a /32 on eth0 and a host route to it through its host-side veth, and pod
// B adds pod A's address inside its namespace. A's namespace and veth keep
// A; B's get B while B keeps its own address, and nothing once B has only
// A's: over 50 refreshes each, since the old join took whichever namespace
// map order gave it first.
func TestPodCannotClaimItsNeighboursAddress(t *testing.T) {
	node := testenv.NewNetns(t)
	podA, podB := testenv.NewNetns(t), testenv.NewNetns(t)
	ipA, ipB := "198.18.71.2", "198.18.72.2" // A's sorts first: B's namespace meets A's address first
	wire := func(p *testenv.Netns, hostIf, ip string) int {
		testenv.Run(t, "ip", "link", "add", "eth0", "netns", p.Name, "type", "veth", "peer", "name", hostIf, "netns", node.Name)
		p.Exec(t, "ip", "addr", "add", ip+"/32", "dev", "eth0")
		p.Exec(t, "ip", "link", "set", "eth0", "up")
		node.Exec(t, "ip", "link", "set", hostIf, "up")
		node.Exec(t, "ip", "route", "add", ip+"/32", "dev", hostIf)
		return node.IfIndex(t, hostIf)
	}
	vethA, vethB := wire(podA, "vpoda", ipA), wire(podB, "vpodb", ipB)
	podB.Exec(t, "ip", "addr", "add", ipA+"/32", "dev", "eth0")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var v *View
	if err := node.Do(func() error {
		w, err := NewWatcher(slog.New(slog.DiscardHandler), WatcherOptions{})
		if err != nil {
			return err
		}
		if err := w.Start(ctx); err != nil {
			return err
		}
		v, err = New(Options{Own: node.Cookie(t), Links: w,
			Source: onlySource{KernelSource: KernelSource{PinDirs: PinDirs}, pins: map[string]bool{podA.Name: true, podB.Name: true}}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "link view has both host ends", func() bool {
		_, a := v.ByIndex(vethA)
		_, b := v.ByIndex(vethB)
		return a && b
	})
	a, b := cluster.Pod{Namespace: "shop", Name: "a"}, cluster.Pod{Namespace: "shop", Name: "b"}
	v.SetPods(podsByIP{netip.MustParseAddr(ipA): a, netip.MustParseAddr(ipB): b})
	inoA, inoB := podA.Cookie(t), podB.Cookie(t)

	check := func(phase string, wantB cluster.Pod, bAttributed bool) {
		t.Helper()
		wrong := 0
		for i := range 50 {
			// refresh reads nsids and addresses from the calling thread's
			// namespace, which for an agent is the node's.
			if err := node.Do(func() error { v.refresh(t.Context(), true); return nil }); err != nil {
				t.Fatal(err)
			}
			s := v.Snapshot()
			gotA, okA := s.ByNetns(inoA)
			ifA, okIfA := s.ByHostInterface(vethA)
			gotB, okB := s.ByNetns(inoB)
			ifB, okIfB := s.ByHostInterface(vethB)
			if !okA || gotA != a || !okIfA || ifA != a || okB != bAttributed || gotB != wantB || okIfB != bAttributed || ifB != wantB {
				if wrong == 0 {
					t.Errorf("%s, refresh %d: A's namespace %v %v, veth %v %v; B's namespace %v %v, veth %v %v; want A's a, B's %v (%v)",
						phase, i, gotA, okA, ifA, okIfA, gotB, okB, ifB, okIfB, wantB, bAttributed)
				}
				wrong++
			}
		}
		if wrong > 0 {
			t.Errorf("%s: %d of 50 refreshes attributed wrongly", phase, wrong)
		}
	}
	check("B holds its own address and A's", b, true)
	podB.Exec(t, "ip", "addr", "del", ipB+"/32", "dev", "eth0")
	check("B holds only A's address", cluster.Pod{}, false)
}
