package kube_test

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors/mesh"
	"github.com/netsonde/netsonde/internal/testenv"
)

// nodeIP is simulated node i's InternalIP, in 198.19.0.0/16 (of the test
// range 198.18.0.0/15). The agent runs in a namespace with no route at
// all but its own loopback: the mesh and path-MTU probes sent to these
// addresses fail with "network unreachable" and leave nothing.
func nodeIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(i%250 + 1)})
}

// statusMiB reads a VmHWM or VmRSS line of /proc/PID/status.
func statusMiB(t *testing.T, pid int, field string) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return kb / 1024
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// Every agent lists and watches the cluster's nodes to learn its peers'
// addresses. With 5,000 Node objects as kubelets write them (about 20 KB
// each) in the real kube-apiserver, the agent's peak RSS must stay under
// 64 MiB (the chart limits it at 128 Mi; it was 269 MB), and its steady
// RSS within a few MiB of a cluster without them; the peer count and the
// mesh's 16 peers must be the ones rendezvous hashing picks from the
// whole list. The same at 500 and 1,000 nodes.
func TestNodeListMemory(t *testing.T) {
	const (
		peakLimit = 64.0 // MiB
		// MiB over the agent of a cluster without nodes: the peers
		// themselves are about 1 MiB at 5,000 nodes; the rest is the
		// GC's slack over the mesh's per-round copies of the list.
		steadyAbove = 8.0
	)
	sizes := []int{0, 500, 1000, 5000}
	node := testenv.NewNetns(t)
	if out := node.Exec(t, "ip", "-4", "route", "show"); strings.TrimSpace(out) != "" {
		t.Fatalf("the test namespace has routes, simulated nodes could be reached through them:\n%s", out)
	}
	k := testenv.StartKubeAPI(t, node)
	k.Kubectl(t, "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n", "create", "-f", "-")

	type figures struct {
		nodes          int
		peak, steady   float64
		synced         time.Duration
		create         time.Duration
		peers, meshSet float64
	}
	var rows []figures
	var all []cluster.Node
	made := 0
	for _, n := range sizes {
		begin := time.Now()
		var batch [][]byte
		for ; made < n; made++ {
			name := fmt.Sprintf("node-%05d", made)
			batch = append(batch, testenv.KubeletNode(name, nodeIP(made), fmt.Sprintf("10.%d.%d.0/24", 64+made/256, made%256)))
			all = append(all, cluster.Node{Name: name, InternalIP: nodeIP(made)})
		}
		if len(batch) > 0 {
			t.Logf("%d Node objects of %d bytes (JSON) each", len(batch), len(batch[0]))
		}
		k.CreateNodes(t, batch)
		f := figures{nodes: n, create: time.Since(begin)}

		start := time.Now()
		agent := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a",
			"--collector.disable-defaults", "--collector.mesh", "--mesh.per-peer", "--mesh.interval=1s", "--mesh.timeout=100ms")
		pid := agent.Cmd.Process.Pid
		testenv.Eventually(t, 60*time.Second, fmt.Sprintf("netsonde_kube_peer_nodes %d", n), func() bool {
			m := agent.Scrape(t)
			up, _ := m.Value("netsonde_kube_up", nil)
			f.peers, _ = m.Value("netsonde_kube_peer_nodes", nil)
			return up == 1 && f.peers == float64(n)
		})
		f.synced = time.Since(start)
		// The mesh picks its 16 by rendezvous hashing over the whole list:
		// the same 16 as over the full node list here.
		want := map[string]bool{}
		for _, p := range mesh.Select("node-a", mesh.FromNodes(all), 16) {
			want[p.Name] = true
		}
		testenv.Eventually(t, 15*time.Second, "the mesh probes the peers rendezvous hashing picks", func() bool {
			m := agent.Scrape(t)
			f.meshSet, _ = m.Value("netsonde_mesh_peers", nil)
			got := map[string]bool{}
			for _, s := range m.Series("netsonde_node_probes_total", map[string]string{"path": "underlay"}) {
				got[s.Labels["peer"]] = true
			}
			if len(got) != len(want) {
				return false
			}
			for p := range want {
				if !got[p] {
					return false
				}
			}
			return f.meshSet == float64(len(want))
		})
		// Steady: what is left once the list's garbage is collected and
		// handed back, with the watch running.
		time.Sleep(10 * time.Second)
		f.steady = statusMiB(t, pid, "VmRSS")
		m := agent.Scrape(t)
		inuse, _ := m.Value("go_memstats_heap_inuse_bytes", nil)
		idle, _ := m.Value("go_memstats_heap_idle_bytes", nil)
		released, _ := m.Value("go_memstats_heap_released_bytes", nil)
		t.Logf("%5d nodes: Go heap in use %.1f MiB, idle not released %.1f MiB", n, inuse/(1<<20), (idle-released)/(1<<20))
		f.peak = statusMiB(t, pid, "VmHWM")
		testenv.StopAgent(t, agent)
		rows = append(rows, f)
		t.Logf("%5d nodes: peak %.1f MiB, steady %.1f MiB, synced %v after start (created in %v)", n, f.peak, f.steady, f.synced.Round(time.Millisecond), f.create.Round(time.Second))
	}
	base := rows[0].steady
	var table strings.Builder
	table.WriteString("| nodes | peak RSS (MiB) | steady RSS (MiB) | peers |\n|---|---|---|---|\n")
	for _, f := range rows {
		fmt.Fprintf(&table, "| %d | %.1f | %.1f | %.0f |\n", f.nodes, f.peak, f.steady, f.peers)
		if f.peak >= peakLimit {
			t.Errorf("%d nodes: peak RSS %.1f MiB, want under %.0f MiB", f.nodes, f.peak, peakLimit)
		}
		if f.steady > base+steadyAbove {
			t.Errorf("%d nodes: steady RSS %.1f MiB, more than %.0f MiB over the %.1f MiB without nodes", f.nodes, f.steady, steadyAbove, base)
		}
	}
	t.Logf("agent memory by cluster size:\n%s", table.String())
}
