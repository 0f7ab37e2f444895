//go:build soak

// Package soak runs the agent for a long time under churn and records its
// footprint (make soak; not part of make test). See BENCHMARKS.md.
package soak

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestSoak runs the agent with every default collector and a cluster for
// $SOAK_DURATION (default 1h) while pods (their namespaces and veths) come
// and go, packets are dropped, SYNs retransmitted and DNS queries sent;
// it scrapes every 5 s and writes RSS, goroutines, open fds and scrape time
// to $SOAK_OUT/soak.csv, plotted in soak.png (gnuplot).
//
// Flat means: the mean RSS of the last sixth of the run (minutes 50-60 of
// an hour) within 5% of the second sixth (minutes 10-20), and goroutines
// and fds back to their baseline once the churn stops.
func TestSoak(t *testing.T) {
	testenv.RequireCommand(t, "nft", "gnuplot")
	duration := time.Hour
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION=%q: %v", v, err)
		}
		duration = d
	}
	out := os.Getenv("SOAK_OUT")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	node := testenv.NewNetns(t)
	k := testenv.StartKubeAPI(t, node)
	k.Kubectl(t, "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n", "create", "-f", "-")
	k.Kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: soak}\n", "create", "-f", "-")
	agent := testenv.StartAgent(t, node, "--kubeconfig="+k.Kubeconfig, "--node-name=node-a")
	pid := agent.Cmd.Process.Pid

	csv, err := os.Create(filepath.Join(out, "soak.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer csv.Close()
	fmt.Fprintln(csv, "seconds,rss_mib,goroutines,fds,scrape_ms,series")

	type sample struct {
		at              time.Duration
		rss             float64
		goroutines, fds int
		scrapeMS        float64
	}
	var samples []sample
	begin := time.Now()
	take := func() sample {
		s := sample{at: time.Since(begin)}
		t0 := time.Now()
		resp, err := agent.Client.Get(agent.URL + "/metrics")
		if err != nil {
			t.Errorf("scrape: %v", err)
			return s
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s.scrapeMS = float64(time.Since(t0).Microseconds()) / 1000
		series := 0
		for _, l := range strings.Split(string(body), "\n") {
			if l == "" || l[0] == '#' {
				continue
			}
			series++
			if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				s.goroutines = int(f)
			}
		}
		s.rss = float64(statusKiB(t, pid, "VmRSS")) / 1024
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		s.fds = len(fds)
		fmt.Fprintf(csv, "%.0f,%.2f,%d,%d,%.2f,%d\n", s.at.Seconds(), s.rss, s.goroutines, s.fds, s.scrapeMS, series)
		samples = append(samples, s)
		return s
	}
	time.Sleep(5 * time.Second)
	baseline := take()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { churn(t, k, node, stop) })

	tick := time.NewTicker(5 * time.Second)
	for time.Since(begin) < duration {
		<-tick.C
		take()
	}
	close(stop)
	wg.Wait()
	// The churn's last pods are gone: goroutines and fds should settle
	// where they started (the resolver rebuilds within 10 s).
	time.Sleep(15 * time.Second)
	final := take()
	tick.Stop()
	csv.Sync()

	mean := func(from, to time.Duration) float64 {
		var sum float64
		n := 0
		for _, s := range samples {
			if s.at >= from && s.at < to {
				sum += s.rss
				n++
			}
		}
		if n == 0 {
			return 0
		}
		return sum / float64(n)
	}
	sixth := duration / 6
	early, late := mean(sixth, 2*sixth), mean(duration-sixth, duration)
	var maxScrape float64
	for _, s := range samples {
		maxScrape = max(maxScrape, s.scrapeMS)
	}
	summary := fmt.Sprintf("duration %v, %d samples; mean RSS %v-%v: %.1f MiB, last %v: %.1f MiB (ratio %.3f); "+
		"goroutines %d -> %d, fds %d -> %d; scrape max %.1f ms",
		duration, len(samples), sixth, 2*sixth, early, sixth, late, late/early,
		baseline.goroutines, final.goroutines, baseline.fds, final.fds, maxScrape)
	t.Log(summary)
	if err := os.WriteFile(filepath.Join(out, "summary.txt"), []byte(summary+"\n"), 0o644); err != nil {
		t.Error(err)
	}
	plot(t, out, summary)
	if late > early*1.05 {
		t.Errorf("RSS grew: %.1f MiB in the last sixth vs %.1f MiB in the second", late, early)
	}
	// A few goroutines and fds of slack: an HTTP keep-alive connection
	// and the informers' watch reconnects come and go.
	if final.goroutines > baseline.goroutines+5 {
		t.Errorf("goroutines %d at the end, %d at the start", final.goroutines, baseline.goroutines)
	}
	if final.fds > baseline.fds+3 {
		t.Errorf("open fds %d at the end, %d at the start", final.fds, baseline.fds)
	}
}

// churn keeps a rolling window of pods on the node: each new pod gets a
// network namespace, a veth to the node and an address, its object in the
// API server, and traffic that the agent counts (drops by nftables, SYN
// retransmits, DNS queries to a port nothing answers); the oldest is then
// deleted with its namespace.
func churn(t *testing.T, k *testenv.KubeAPI, node *testenv.Netns, stop <-chan struct{}) {
	const window = 8
	type pod struct {
		name, ns string
	}
	var live []pod
	remove := func(p pod) {
		k.KubectlErr("", "delete", "pod", p.name, "-n", "soak", "--grace-period=0", "--force")
		exec.Command("ip", "netns", "del", p.ns).Run() // takes the veth with it
	}
	defer func() {
		for _, p := range live {
			remove(p)
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(2 * time.Second):
		}
		slot := i % 60
		host := fmt.Sprintf("198.18.101.%d", 4*slot+1)
		addr := fmt.Sprintf("198.18.101.%d", 4*slot+2)
		p := pod{name: fmt.Sprintf("p%d", i), ns: testenv.RandomName("nsd-soak")}
		steps := [][]string{
			{"ip", "netns", "add", p.ns},
			{"ip", "-n", p.ns, "link", "set", "lo", "up"},
			{"ip", "link", "add", "s" + strconv.Itoa(i), "netns", node.Name, "type", "veth", "peer", "name", "eth0", "netns", p.ns},
			{"ip", "-n", node.Name, "addr", "add", host + "/30", "dev", "s" + strconv.Itoa(i)},
			{"ip", "-n", node.Name, "link", "set", "s" + strconv.Itoa(i), "up"},
			{"ip", "-n", p.ns, "addr", "add", addr + "/30", "dev", "eth0"},
			{"ip", "-n", p.ns, "link", "set", "eth0", "up"},
			{"ip", "netns", "exec", p.ns, "nft", "add table inet t; add chain inet t in { type filter hook input priority 0; }; add rule inet t in udp dport 9999 drop; add rule inet t in tcp dport 9997 drop"},
		}
		ok := true
		for _, s := range steps {
			if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
				t.Logf("churn %v: %v\n%s", s, err, out)
				ok = false
				break
			}
		}
		live = append(live, p)
		if ok {
			manifest := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: soak}\nspec:\n  nodeName: node-a\n  containers: [{name: c, image: registry.invalid/c}]\n", p.name)
			if out, err := k.KubectlErr(manifest, "create", "-f", "-"); err != nil {
				t.Logf("create pod: %v\n%s", err, out)
			}
			k.KubectlErr("", "patch", "pod", p.name, "-n", "soak", "--subresource=status", "--type=merge",
				"-p", fmt.Sprintf(`{"status":{"podIP":%q,"podIPs":[{"ip":%q}]}}`, addr, addr))
			traffic(node, addr)
		}
		if len(live) > window {
			remove(live[0])
			live = live[1:]
		}
	}
}

// traffic sends what the agent's collectors count, from the node to a pod.
func traffic(node *testenv.Netns, addr string) {
	_ = node.Do(func() error {
		if c, err := net.Dial("udp4", net.JoinHostPort(addr, "9999")); err == nil {
			for range 50 {
				c.Write([]byte("drop me"))
			}
			c.Close()
		}
		// A query for a name nobody serves: the DNS hooks, when they
		// land, see it; today it is one more drop (port unreachable).
		if c, err := net.Dial("udp4", net.JoinHostPort(addr, "53")); err == nil {
			c.Write([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04soak\x07example\x00\x00\x01\x00\x01"))
			c.Close()
		}
		return nil
	})
	// SYNs that nftables drops are retransmitted (after 1 s): the
	// retransmit counter counts them.
	go node.Do(func() error {
		if c, err := net.DialTimeout("tcp4", net.JoinHostPort(addr, "9997"), 1500*time.Millisecond); err == nil {
			c.Close()
		}
		return nil
	})
}

func statusKiB(t *testing.T, pid int, key string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Errorf("agent status: %v", err)
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

func plot(t *testing.T, dir, title string) {
	script := fmt.Sprintf(`set datafile separator ","
set terminal pngcairo size 1200,900 noenhanced
set output %q
set multiplot layout 4,1 title %q font ",9"
set key off
set xlabel "minutes"
set ylabel "RSS (MiB)"
plot %[3]q using ($1/60):2 every ::1 with lines lw 2
set ylabel "goroutines"
plot %[3]q using ($1/60):3 every ::1 with lines lw 2
set ylabel "open fds"
plot %[3]q using ($1/60):4 every ::1 with lines lw 2
set ylabel "scrape (ms)"
plot %[3]q using ($1/60):5 every ::1 with lines lw 2
unset multiplot
`, filepath.Join(dir, "soak.png"), title, filepath.Join(dir, "soak.csv"))
	cmd := exec.Command("gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("gnuplot: %v\n%s", err, out)
	}
}
