// Command tcxcost measures what netsonde's fragment counters (TCX ingress
// and egress programs) cost per packet, in one run: the kernel's own
// per-program accounting (BPF_ENABLE_STATS), and iperf3 TCP and small-packet
// UDP throughput over a veth pair with and without the programs, as
// alternating pairs with the median ratio. Prints a markdown table for
// BENCHMARKS.md. Needs root and iperf3.
//
//	go run ./hack/bench/tcxcost -pairs 10 -seconds 2
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	bpffrag "github.com/netsonde/netsonde/bpf/fragments"

	"github.com/netsonde/netsonde/hack/bench/benchkit"
)

func main() {
	pairs := flag.Int("pairs", 10, "alternating with/without pairs per test")
	seconds := flag.Int("seconds", 2, "iperf3 run length")
	flag.Parse()
	if err := run(*pairs, *seconds); err != nil {
		log.Fatal(err)
	}
}

func run(pairs, seconds int) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return err
	}
	sfx := fmt.Sprint(os.Getpid())
	a, b := "tcxa"+sfx, "tcxb"+sfx
	for _, ns := range []string{a, b} {
		if err := benchkit.Sh("ip", "netns", "add", ns); err != nil {
			return err
		}
		defer benchkit.Sh("ip", "netns", "del", ns)
	}
	for _, c := range [][]string{
		{"ip", "link", "add", "tx0", "netns", a, "type", "veth", "peer", "name", "tx1", "netns", b},
		{"ip", "-n", a, "addr", "add", "198.18.90.1/24", "dev", "tx0"},
		{"ip", "-n", b, "addr", "add", "198.18.90.2/24", "dev", "tx1"},
		{"ip", "-n", a, "link", "set", "tx0", "up"},
		{"ip", "-n", b, "link", "set", "tx1", "up"},
		{"ip", "-n", b, "link", "set", "lo", "up"},
	} {
		if err := benchkit.Sh(c...); err != nil {
			return err
		}
	}
	srv := exec.Command("ip", "netns", "exec", b, "iperf3", "-s", "-B", "198.18.90.2")
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(500 * time.Millisecond)

	tests := []struct {
		name string
		args []string
	}{
		{"TCP", []string{"-t", fmt.Sprint(seconds)}},
		{"UDP 64-byte", []string{"-u", "-b", "0", "-l", "64", "-t", fmt.Sprint(seconds)}},
	}
	type res struct{ ratios, off, on, nsPerPkt []float64 }
	results := map[string]*res{}
	for _, tc := range tests {
		r := &res{}
		results[tc.name] = r
		for i := 0; i < pairs; i++ {
			// Alternate which goes first, so drift hits both alike.
			order := []bool{false, true}
			if i%2 == 1 {
				order = []bool{true, false}
			}
			var off, on float64
			for _, with := range order {
				var c *bpffrag.Probe
				var err error
				if with {
					if c, err = attachIn(a, "tx0"); err != nil {
						return err
					}
				}
				bps, err := benchkit.Iperf(a, "198.18.90.2", tc.args...)
				if err != nil {
					return err
				}
				if with {
					c.Close()
					on = bps
				} else {
					off = bps
				}
			}
			r.off, r.on = append(r.off, off), append(r.on, on)
			r.ratios = append(r.ratios, on/off)
		}
		// Per-run cost, measured apart: the accounting itself adds two
		// clock reads to every run, which must not weigh on the
		// throughput pairs above.
		stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			return fmt.Errorf("enable BPF stats: %w", err)
		}
		c, err := attachIn(a, "tx0")
		if err != nil {
			stats.Close()
			return err
		}
		if _, err := benchkit.Iperf(a, "198.18.90.2", tc.args...); err != nil {
			return err
		}
		if ns, n := c.RunStats(); n > 0 {
			r.nsPerPkt = append(r.nsPerPkt, float64(ns)/float64(n))
		}
		c.Close()
		stats.Close()
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
	}
	fmt.Printf("%d alternating pairs per test, %d s each, iperf3 over a veth pair, programs on the sender's veth (ingress and egress); medians; %s\n\n",
		pairs, seconds, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| test | without | with | median ratio with/without | kernel accounting, ns per program run |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, tc := range tests {
		r := results[tc.name]
		fmt.Printf("| %s | %.2f Gbit/s | %.2f Gbit/s | %.3f | %.0f |\n", tc.name, med(r.off)/1e9, med(r.on)/1e9, med(r.ratios), med(r.nsPerPkt))
	}
	return nil
}

// attachIn loads the counter and attaches it to ifname inside namespace
// ns, from a thread switched there (TCX attaches by ifindex, which is per
// namespace).
func attachIn(ns, ifname string) (*bpffrag.Probe, error) {
	type result struct {
		c   *bpffrag.Probe
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the namespace
		h, err := netns.GetFromName(ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := bpffrag.Load(bpffrag.Options{})
		if err != nil {
			ch <- result{err: err}
			return
		}
		ifi, err := netInterfaceIndex(ifname)
		if err == nil {
			err = c.Interfaces().Attach(ifi, false)
		}
		if err != nil {
			c.Close()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
