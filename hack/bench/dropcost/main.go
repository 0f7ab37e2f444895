// Command dropcost measures what netsonde's drop counter costs, in one run:
// the kernel's own per-program accounting (BPF_ENABLE_STATS run time / run
// count) for an empty tp_btf/kfree_skb program and for netsonde's, over a
// storm of UDP datagrams dropped by an nftables rule, and the storm's wall
// time with no program, the empty one and netsonde's, in alternating rounds.
// It prints a markdown table for BENCHMARKS.md. Needs root.
//
//	go run ./hack/bench/dropcost -packets 300000 -rounds 7
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	bpfdrops "github.com/netsonde/netsonde/bpf/drops"
	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/hack/bench/benchkit"
)

func main() {
	packets := flag.Int("packets", 300000, "datagrams per storm")
	rounds := flag.Int("rounds", 7, "storms per configuration, alternating")
	flag.Parse()
	if err := run(*packets, *rounds); err != nil {
		log.Fatal(err)
	}
}

func run(packets, rounds int) error {
	suffix := fmt.Sprint(os.Getpid())
	src, dst := "dcsrc"+suffix, "dcdst"+suffix
	for _, ns := range []string{src, dst} {
		if err := benchkit.Sh("ip", "netns", "add", ns); err != nil {
			return err
		}
		defer benchkit.Sh("ip", "netns", "del", ns)
	}
	for _, c := range [][]string{
		{"ip", "link", "add", "dc0", "netns", src, "type", "veth", "peer", "name", "dc1", "netns", dst},
		{"ip", "-n", src, "addr", "add", "198.18.77.1/24", "dev", "dc0"},
		{"ip", "-n", dst, "addr", "add", "198.18.77.2/24", "dev", "dc1"},
		{"ip", "-n", src, "link", "set", "dc0", "up"},
		{"ip", "-n", dst, "link", "set", "dc1", "up"},
		{"ip", "netns", "exec", dst, "nft", "add table inet b; add chain inet b in { type filter hook input priority 0; }; add rule inet b in udp dport 9999 drop"},
		{"ip", "netns", "exec", src, "ping", "-c1", "-W2", "198.18.77.2"},
	} {
		if err := benchkit.Sh(c...); err != nil {
			return err
		}
	}
	// The kernel counts run time only while someone holds this fd; it is
	// released (and the accounting turned off) when we exit.
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return fmt.Errorf("enable BPF stats: %w", err)
	}
	defer stats.Close()

	type result struct {
		wall       []time.Duration
		nsPerRun   []float64
		runsPerPkt []float64
	}
	configs := []string{"none", "empty", "netsonde"}
	res := map[string]*result{}
	for _, c := range configs {
		res[c] = &result{}
	}
	for r := 0; r < rounds; r++ {
		for _, c := range configs {
			var prog *ebpf.Program
			var closer func()
			switch c {
			case "empty":
				p, l, err := bpfdrops.LoadEmpty()
				if err != nil {
					return err
				}
				prog, closer = p, func() { l.Close(); p.Close() }
			case "netsonde":
				p, err := bpfdrops.Load(bpfdrops.Options{Hooks: []string{loader.HookTPBTF},
					// As the agent runs it.
					MaxKeysPerInterface: bpfdrops.DefaultMaxKeysPerInterface, MaxKeysPerNetns: bpfdrops.DefaultMaxKeysPerNetns})
				if err != nil {
					return err
				}
				prog, closer = p.Program(), func() { p.Close() }
			}
			var t0 time.Duration
			var n0 uint64
			if prog != nil {
				t0, n0 = benchkit.ProgStats(prog)
			}
			start := time.Now()
			if err := storm(src, packets); err != nil {
				return err
			}
			wall := time.Since(start)
			res[c].wall = append(res[c].wall, wall)
			if prog != nil {
				t1, n1 := benchkit.ProgStats(prog)
				if n1 > n0 {
					res[c].nsPerRun = append(res[c].nsPerRun, float64(t1-t0)/float64(n1-n0))
					res[c].runsPerPkt = append(res[c].runsPerPkt, float64(n1-n0)/float64(packets))
				}
				closer()
			}
		}
	}
	medD := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	medF := func(f []float64) float64 {
		sort.Float64s(f)
		return f[len(f)/2]
	}
	e, n := medF(res["empty"].nsPerRun), medF(res["netsonde"].nsPerRun)
	wNone, wEmpty, wNs := medD(res["none"].wall), medD(res["empty"].wall), medD(res["netsonde"].wall)
	fmt.Printf("storm: %d UDP datagrams dropped by nftables, %d rounds per configuration, alternating; medians; %s, %d CPUs\n\n",
		packets, rounds, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU())
	fmt.Println("| | no program | empty tp_btf program | netsonde drop counter |")
	fmt.Println("| --- | --- | --- | --- |")
	fmt.Printf("| kernel accounting, ns per run | | %.0f | %.0f |\n", e, n)
	fmt.Printf("| ratio to the empty program | | 1.00 | %.2f |\n", n/e)
	fmt.Printf("| program runs per datagram sent | | %.2f | %.2f |\n", medF(res["empty"].runsPerPkt), medF(res["netsonde"].runsPerPkt))
	fmt.Printf("| storm wall time | %v | %v | %v |\n", wNone.Round(time.Millisecond), wEmpty.Round(time.Millisecond), wNs.Round(time.Millisecond))
	fmt.Printf("| storm slowdown vs no program | 1.000 | %.3f | %.3f |\n", float64(wEmpty)/float64(wNone), float64(wNs)/float64(wNone))
	return nil
}

// storm sends n datagrams from namespace ns to the dropping port as fast
// as one thread can.
func storm(ns string, n int) error {
	return benchkit.InNetns(ns, func() error {
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.ParseIP("198.18.77.2"), Port: 9999}
		buf := []byte("netsonde drop storm")
		for i := 0; i < n; i++ {
			c.WriteTo(buf, to)
		}
		return nil
	})
}
