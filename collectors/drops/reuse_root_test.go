package drops_test

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// podNetns makes a namespace for a simulated pod that the test deletes
// itself (testenv.NewNetns deletes its own at the end and fails on one
// already gone).
func podNetns(t *testing.T) *testenv.Netns {
	t.Helper()
	ns := &testenv.Netns{Name: testenv.RandomName("nsd-")}
	testenv.Run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns.Name).Run() })
	return ns
}

// TestReusedInodeKeepsPodsApart: pod old drops exactly 100 datagrams
// (UDP to a closed port on its loopback: NO_SOCKET), then its Pod object
// and namespace go; pod new comes up in a namespace that the kernel gave
// the same inode (made and deleted until it does: a freed namespace's
// inode goes to the next one made) and drops exactly 30. new's series
// reads exactly 30, and old's never more than 100 at any scrape. Keyed by
// inode, the kernel's key of old's drops was new's too: new read 130.
// The series are the datagrams' (NO_SOCKET, lo, IPv4): the node's side of
// each veth sends IPv6 that a pod may drop besides.
func TestReusedInodeKeepsPodsApart(t *testing.T) {
	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	a := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a",
		"--collector.disable-defaults", "--collector.drops", "--hostnet.refresh-interval=500ms")
	series := func(pod string) map[string]string {
		return map[string]string{"namespace": "shop", "pod": pod, "reason": "NO_SOCKET", "interface": "lo", "protocol": "ipv4"}
	}
	newPod := series("new")
	// maxOld is the most each old pod's series read at any scrape.
	maxOld := map[string]float64{}
	scrape := func() testenv.Metrics {
		m := a.Scrape(t)
		for name := range maxOld {
			maxOld[name] = max(maxOld[name], m.Sum(dropsMetric, series(name)))
		}
		return m
	}
	attributed := func(want float64) {
		t.Helper()
		testenv.Eventually(t, 15*time.Second, fmt.Sprintf("%v pods attributed", want), func() bool {
			v, _ := scrape().Value("netsonde_kube_pods_attributed", nil)
			return v == want
		})
	}

	// The kernel gives a new namespace the lowest free inode: old's once
	// it is freed (asynchronously), unless lower ones were freed meanwhile
	// (other tests' namespaces), which the namespaces made here then hold
	// until old's comes. Another process (any namespace of any kind: every
	// ip netns exec of the tests beside this one makes a mount namespace)
	// may take it first: then a new old pod starts over, up to five times.
	var fresh *testenv.Netns
	var ino uint64
	for attempt := 1; fresh == nil; attempt++ {
		if attempt > 5 {
			t.Fatalf("in 5 attempts, no new namespace got its old pod's inode back (another process took it each time)")
		}
		name := fmt.Sprintf("old-%d", attempt)
		maxOld[name] = 0
		old := podNetns(t)
		old.Exec(t, "ip", "link", "set", "lo", "up")
		ino = old.Inode(t)
		testenv.Veth(t, node, old, "vold", "eth0", "198.18.110.1/24", "198.18.110.2/24", 0)
		k.CreatePod(t, "shop", name, "node-a", "198.18.110.2")
		attributed(1)
		testenv.SendUDP(t, old, "127.0.0.1:9", 32, 100, 50)
		a.WaitSum(t, dropsMetric, series(name), 100)

		k.Kubectl(t, "", "delete", "pod", name, "-n", "shop", "--grace-period=0", "--force")
		testenv.Run(t, "ip", "netns", "del", old.Name)
		attributed(0)

		for try := 0; try < 500 && fresh == nil; try++ {
			ns := podNetns(t)
			if got := ns.Inode(t); got == ino {
				fresh = ns
			} else if got > ino {
				testenv.Run(t, "ip", "netns", "del", ns.Name) // old's not free yet, or taken
				time.Sleep(20 * time.Millisecond)
			}
		}
		if fresh == nil {
			t.Logf("attempt %d: no new namespace got %s's inode %d back in 500 tries (another process took it)", attempt, name, ino)
		}
	}
	fresh.Exec(t, "ip", "link", "set", "lo", "up")
	t.Logf("pod new's namespace has old's inode %d", ino)
	testenv.Veth(t, node, fresh, "vnew", "eth0", "198.18.111.1/24", "198.18.111.2/24", 0)
	k.CreatePod(t, "shop", "new", "node-a", "198.18.111.2")
	attributed(1)
	testenv.SendUDP(t, fresh, "127.0.0.1:9", 32, 30, 50)
	a.WaitSum(t, dropsMetric, newPod, 30)
	// A few more scrapes, as the view refreshes (every 500 ms) and the
	// collector names keys again.
	for range 10 {
		if got := scrape().Sum(dropsMetric, newPod); got != 30 {
			t.Fatalf("pod new's drops read %v, want 30", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Every old pod's series: 100 at some scrape, never more.
	for name, most := range maxOld {
		if most != 100 {
			t.Errorf("pod %s's drops read %v at most, want exactly 100 (never more)", name, most)
		}
	}
}
