// Command connectcost measures what netsonde's TCP connect counter
// (bpf/tcpconnect: inet_sock_set_state and the reset tracepoints) costs:
// the rate of a connect/close loop over a veth pair, and iperf3 TCP
// throughput, each in alternating pairs with and without the programs
// attached, with the median ratio; and the kernel's own per-run accounting
// (BPF_ENABLE_STATS). Prints a markdown table for BENCHMARKS.md. Needs
// root and iperf3.
//
//	go run ./hack/bench/connectcost -pairs 10 -conns 5000 -seconds 2
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"sort"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	bpftc "github.com/netsonde/netsonde/bpf/tcpconnect"

	"github.com/netsonde/netsonde/hack/bench/benchkit"
)

func main() {
	pairs := flag.Int("pairs", 10, "alternating with/without pairs per test")
	conns := flag.Int("conns", 5000, "connections per connect/close round")
	seconds := flag.Int("seconds", 2, "iperf3 run length")
	flag.Parse()
	if err := run(*pairs, *conns, *seconds); err != nil {
		log.Fatal(err)
	}
}

func run(pairs, conns, seconds int) error {
	sfx := fmt.Sprint(os.Getpid())
	a, b := "tcca"+sfx, "tccb"+sfx
	for _, ns := range []string{a, b} {
		if err := benchkit.Sh("ip", "netns", "add", ns); err != nil {
			return err
		}
		defer benchkit.Sh("ip", "netns", "del", ns)
	}
	for _, c := range [][]string{
		{"ip", "link", "add", "cc0", "netns", a, "type", "veth", "peer", "name", "cc1", "netns", b},
		{"ip", "-n", a, "addr", "add", "198.18.96.1/24", "dev", "cc0"},
		{"ip", "-n", b, "addr", "add", "198.18.96.2/24", "dev", "cc1"},
		{"ip", "-n", a, "link", "set", "cc0", "up"},
		{"ip", "-n", b, "link", "set", "cc1", "up"},
		{"ip", "-n", a, "link", "set", "lo", "up"},
		{"ip", "-n", b, "link", "set", "lo", "up"},
	} {
		if err := benchkit.Sh(c...); err != nil {
			return err
		}
	}
	var ln net.Listener
	if err := benchkit.InNetns(b, func() error {
		var err error
		ln, err = net.Listen("tcp4", "198.18.96.2:80")
		return err
	}); err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	srv := exec.Command("ip", "netns", "exec", b, "iperf3", "-s", "-B", "198.18.96.2")
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(500 * time.Millisecond)

	loop := func() (float64, error) {
		var rate float64
		err := benchkit.InNetns(a, func() error {
			start := time.Now()
			for i := 0; i < conns; i++ {
				c, err := net.Dial("tcp4", "198.18.96.2:80")
				if err != nil {
					return err
				}
				io.Copy(io.Discard, c)
				c.Close()
			}
			rate = float64(conns) / time.Since(start).Seconds()
			return nil
		})
		return rate, err
	}
	tests := []struct {
		name, unit string
		scale      float64
		fn         func() (float64, error)
	}{
		{"connect/close loop", "connections/s", 1, loop},
		{"iperf3 TCP", "Gbit/s", 1e9, func() (float64, error) { return benchkit.Iperf(a, "198.18.96.2", "-t", fmt.Sprint(seconds)) }},
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
	}
	fmt.Printf("%d alternating pairs per test (connect loop: %d connections per round, one thread; iperf3: %d s), over a veth pair; medians; %s\n\n",
		pairs, conns, seconds, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| test | without | with | median ratio with/without | kernel accounting, ns per run (inet_sock_set_state) |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, tc := range tests {
		var off, on, ratios []float64
		for i := 0; i < pairs; i++ {
			order := []bool{false, true}
			if i%2 == 1 {
				order = []bool{true, false}
			}
			var o, w float64
			for _, with := range order {
				var c *bpftc.Probe
				var err error
				if with {
					if c, err = bpftc.Load(bpftc.Options{}); err != nil {
						return err
					}
				}
				v, err := tc.fn()
				if c != nil {
					c.Close()
				}
				if err != nil {
					return err
				}
				if with {
					w = v
				} else {
					o = v
				}
			}
			off, on, ratios = append(off, o), append(on, w), append(ratios, w/o)
		}
		// The accounting adds two clock reads per run: measured apart.
		stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			return fmt.Errorf("enable BPF stats: %w", err)
		}
		c, err := bpftc.Load(bpftc.Options{})
		if err != nil {
			stats.Close()
			return err
		}
		_, err = tc.fn()
		var perRun float64
		if p := c.Active(bpftc.ProgramSetState); p != nil {
			if st, serr := p.Stats(); serr == nil && st.RunCount > 0 {
				perRun = float64(st.Runtime.Nanoseconds()) / float64(st.RunCount)
			}
		}
		c.Close()
		stats.Close()
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %.1f %s | %.1f %s | %.3f | %.0f |\n", tc.name, med(off)/tc.scale, tc.unit, med(on)/tc.scale, tc.unit, med(ratios), perRun)
	}
	return nil
}
