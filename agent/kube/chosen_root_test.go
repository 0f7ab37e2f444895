package kube_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netsonde/netsonde/agent/kube"
	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors/mesh"
	"github.com/netsonde/netsonde/collectors/pmtu"
	"github.com/netsonde/netsonde/internal/testenv"
)

// getCounter counts the agent's GETs of single nodes, by name.
type getCounter struct {
	rt http.RoundTripper
	mu *sync.Mutex
	n  map[string]int
}

func (g getCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if name, ok := strings.CutPrefix(req.URL.Path, "/api/v1/nodes/"); ok && req.Method == http.MethodGet && !strings.Contains(name, "/") {
		g.mu.Lock()
		g.n[name]++
		g.mu.Unlock()
	}
	return g.rt.RoundTrip(req)
}

// The agent knows every node's name but reads only the nodes its probers
// choose. With 40 kubelet-sized nodes in the real kube-apiserver: the mesh
// and the path-MTU probe choose over the resolver's answer the 16 that
// rendezvous hashing picks from all 40, and the agent read exactly those
// 16; a status update of each of the 24 others costs no GET; a chosen
// node's new InternalIP becomes the probers' target; a chosen node deleted
// leaves, and the 17th-ranked takes its place.
func TestChosenPeersFollowNodes(t *testing.T) {
	const total = 40
	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	ips := map[string]netip.Addr{}
	var batch [][]byte
	for i := range total {
		name := fmt.Sprintf("node-%05d", i)
		ips[name] = nodeIP(i)
		batch = append(batch, testenv.KubeletNode(name, nodeIP(i), fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)))
	}
	k.CreateNodes(t, batch)
	self := "node-00000"

	var mu sync.Mutex
	gets := map[string]int{}
	getsOf := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return gets[name]
	}
	r := startJoined(t, node, kube.Config{Kubeconfig: k.Kubeconfig, NodeName: self},
		func(rt http.RoundTripper) http.RoundTripper { return getCounter{rt: rt, mu: &mu, n: gets} })

	// want is what the probers must choose: the mesh's 16 (and the
	// path-MTU probe's, its default) over every node there is.
	want := func() []mesh.Peer {
		var all []cluster.Node
		for name, ip := range ips {
			all = append(all, cluster.Node{Name: name, InternalIP: ip})
		}
		slices.SortFunc(all, func(a, b cluster.Node) int { return strings.Compare(a.Name, b.Name) })
		return mesh.Select(self, mesh.FromNodes(all), 16)
	}
	// probersChoose waits until the mesh's and the path-MTU probe's
	// choices over the resolver's answer are want's peers at their
	// addresses.
	probersChoose := func(what string) []mesh.Peer {
		t.Helper()
		w := want()
		var gotMesh []mesh.Peer
		var gotPMTU []cluster.Node
		testenv.Eventually(t, 15*time.Second, what, func() bool {
			gotMesh = mesh.Select(self, mesh.FromNodes(r.PeerNodes(16)), 16)
			gotPMTU = pmtu.Peers(self, r.PeerNodes(16), 16)
			if r.PeerCount() != len(ips)-1 || len(gotMesh) != len(w) || len(gotPMTU) != len(w) {
				return false
			}
			for i := range w {
				if gotMesh[i].Name != w[i].Name || gotMesh[i].Underlay != w[i].Underlay ||
					gotPMTU[i].Name != w[i].Name || gotPMTU[i].InternalIP != w[i].Underlay {
					return false
				}
			}
			return true
		})
		return w
	}
	chosen := probersChoose("the probers choose the top 16 of all 40 nodes")
	isChosen := map[string]bool{}
	for _, p := range chosen {
		isChosen[p.Name] = true
		if n := getsOf(p.Name); n != 1 {
			t.Errorf("chosen %s read %d times, want once", p.Name, n)
		}
	}
	for name := range ips {
		if !isChosen[name] && getsOf(name) != 0 {
			t.Errorf("%s, not chosen, read %d times", name, getsOf(name))
		}
	}

	// A status update of each node not chosen, then one of a chosen node:
	// the watch's events come in order, so once the chosen node is read
	// again the 24 others' events have been seen, and none was read.
	heartbeat := func(name string) {
		k.Kubectl(t, "", "patch", "node", name, "--subresource=status", "--type=merge", "-p",
			fmt.Sprintf(`{"status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":%q,"reason":"KubeletReady"}]}}`,
				time.Now().UTC().Format(time.RFC3339)))
	}
	var others []string
	for name := range ips {
		if !isChosen[name] && name != self {
			others = append(others, name)
			heartbeat(name)
		}
	}
	marker := chosen[0].Name
	heartbeat(marker)
	testenv.Eventually(t, 10*time.Second, "the chosen node read again after its status update", func() bool { return getsOf(marker) == 2 })
	for _, name := range others {
		if n := getsOf(name); n != 0 {
			t.Errorf("status updates of %d nodes not chosen: %s read %d times, want none", len(others), name, n)
		}
	}

	// A chosen node's InternalIP changes: the probers' target follows.
	moved := chosen[1].Name
	ips[moved] = netip.MustParseAddr("198.19.200.7")
	k.Kubectl(t, "", "patch", "node", moved, "--subresource=status", "--type=merge", "-p",
		`{"status":{"addresses":[{"type":"InternalIP","address":"198.19.200.7"},{"type":"Hostname","address":"x"}]}}`)
	probersChoose("the probers target the chosen node's new InternalIP")

	// A chosen node leaves: the next-ranked takes its place.
	gone := chosen[2].Name
	delete(ips, gone)
	k.Kubectl(t, "", "delete", "node", gone)
	after := probersChoose("the deleted node leaves the probers' peers, the 17th-ranked comes in")
	for _, p := range after {
		if !isChosen[p.Name] {
			t.Logf("%s left, %s came in (read %d times)", gone, p.Name, getsOf(p.Name))
			if n := getsOf(p.Name); n != 1 {
				t.Errorf("the newly chosen %s read %d times, want once", p.Name, n)
			}
		}
	}
}
