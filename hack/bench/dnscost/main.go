// Command dnscost measures what netsonde's DNS programs (cgroup_skb on the
// cgroup v2 root) cost, in one run: iperf3 TCP and 64-byte UDP throughput
// over a veth pair (non-DNS traffic: the programs return after the port
// check), and DNS queries per second answered by dnsmasq at full rate,
// each with and without the programs in alternating pairs, median of the
// per-pair ratios; and the kernel's own per-run accounting
// (BPF_ENABLE_STATS) in separate runs. Prints a markdown table for
// BENCHMARKS.md. Needs root, iperf3 and dnsmasq.
//
//	go run ./hack/bench/dnscost -pairs 6 -seconds 2
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	bpfdns "github.com/netsonde/netsonde/bpf/dns"
)

func sh(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %v\n%s", args, err, out)
	}
	return nil
}

func main() {
	pairs := flag.Int("pairs", 6, "rounds per test, each running the three configurations in rotating order")
	seconds := flag.Int("seconds", 2, "length of each run")
	flag.Parse()
	if err := run(*pairs, *seconds); err != nil {
		log.Fatal(err)
	}
}

const (
	clientIP = "198.18.91.1"
	serverIP = "198.18.91.2"
)

func run(pairs, seconds int) error {
	sfx := fmt.Sprint(os.Getpid())
	a, b := "dnsa"+sfx, "dnsb"+sfx
	for _, ns := range []string{a, b} {
		if err := sh("ip", "netns", "add", ns); err != nil {
			return err
		}
		defer sh("ip", "netns", "del", ns)
	}
	for _, c := range [][]string{
		{"ip", "link", "add", "dx0", "netns", a, "type", "veth", "peer", "name", "dx1", "netns", b},
		{"ip", "-n", a, "addr", "add", clientIP + "/24", "dev", "dx0"},
		{"ip", "-n", b, "addr", "add", serverIP + "/24", "dev", "dx1"},
		{"ip", "-n", a, "link", "set", "dx0", "up"},
		{"ip", "-n", b, "link", "set", "dx1", "up"},
		{"ip", "-n", b, "link", "set", "lo", "up"},
	} {
		if err := sh(c...); err != nil {
			return err
		}
	}
	iperfSrv := exec.Command("ip", "netns", "exec", b, "iperf3", "-s", "-B", serverIP)
	if err := iperfSrv.Start(); err != nil {
		return err
	}
	defer func() { iperfSrv.Process.Kill(); iperfSrv.Wait() }()
	dnsmasq := exec.Command("ip", "netns", "exec", b, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--conf-file=/dev/null", "--listen-address="+serverIP, "--bind-interfaces", "--user=root", "--pid-file=",
		"--address=/ok.test/198.18.99.1", "--cache-size=0", "--dns-forward-max=1000")
	if err := dnsmasq.Start(); err != nil {
		return err
	}
	defer func() { dnsmasq.Process.Kill(); dnsmasq.Wait() }()
	time.Sleep(500 * time.Millisecond)
	socks, err := dnsSockets(a, 8)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()

	d := time.Duration(seconds) * time.Second
	tests := []struct {
		name, unit string
		scale      float64
		run        func() (float64, error)
	}{
		{"TCP (iperf3)", "Gbit/s", 1e9, func() (float64, error) { return iperf(a, "-t", fmt.Sprint(seconds)) }},
		{"UDP 64-byte (iperf3)", "Gbit/s", 1e9, func() (float64, error) {
			return iperf(a, "-u", "-b", "0", "-l", "64", "-t", fmt.Sprint(seconds))
		}},
		{"DNS queries through dnsmasq", "answers/s", 1, func() (float64, error) { return queries(socks, d), nil }},
	}
	type res struct{ ratios, emptyRatios, off, empty, on, nsPerRun []float64 }
	results := make([]*res, len(tests))
	for ti, tc := range tests {
		r := &res{}
		results[ti] = r
		for i := 0; i < pairs; i++ {
			// Rotate which configuration goes first, so drift hits all
			// alike: none, an empty cgroup_skb program (the hook's own
			// cost), netsonde's programs.
			order := []int{0, 1, 2}
			for k := 0; k < i%3; k++ {
				order = append(order[1:], order[0])
			}
			var v [3]float64
			for _, cfg := range order {
				var closer func()
				switch cfg {
				case 1:
					c, err := attachEmpty()
					if err != nil {
						return err
					}
					closer = c
				case 2:
					p, err := bpfdns.Load(bpfdns.Options{})
					if err != nil {
						return err
					}
					closer = func() { p.Close() }
				}
				x, err := tc.run()
				if closer != nil {
					closer()
				}
				if err != nil {
					return err
				}
				v[cfg] = x
			}
			r.off, r.empty, r.on = append(r.off, v[0]), append(r.empty, v[1]), append(r.on, v[2])
			r.ratios = append(r.ratios, v[2]/v[0])
			r.emptyRatios = append(r.emptyRatios, v[1]/v[0])
		}
		// Per-run cost apart: the accounting adds two clock reads to
		// every run, which must not weigh on the pairs above.
		stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			return fmt.Errorf("enable BPF stats: %w", err)
		}
		p, err := bpfdns.Load(bpfdns.Options{})
		if err != nil {
			stats.Close()
			return err
		}
		if _, err := tc.run(); err != nil {
			return err
		}
		var ns, n uint64
		for _, name := range []string{bpfdns.ProgramEgress, bpfdns.ProgramIngress} {
			if st, err := p.Active(name).Stats(); err == nil {
				ns += uint64(st.Runtime)
				n += st.RunCount
			}
		}
		if n > 0 {
			r.nsPerRun = append(r.nsPerRun, float64(ns)/float64(n))
		}
		p.Close()
		stats.Close()
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
	}
	fmt.Printf("%d alternating pairs per test, %d s each, over a veth pair between two namespaces, programs on the cgroup v2 root (every socket of the machine); medians; %s\n\n",
		pairs, seconds, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| test | without | empty cgroup_skb programs | netsonde's | median ratio empty/without | median ratio netsonde/without | kernel accounting, ns per netsonde program run |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for ti, tc := range tests {
		r := results[ti]
		fmt.Printf("| %s | %.2f %s | %.2f %s | %.2f %s | %.3f | %.3f | %.0f |\n", tc.name, med(r.off)/tc.scale, tc.unit, med(r.empty)/tc.scale, tc.unit,
			med(r.on)/tc.scale, tc.unit, med(r.emptyRatios), med(r.ratios), med(r.nsPerRun))
	}
	return nil
}

// attachEmpty attaches programs that only return 1 to the cgroup v2
// root's egress and ingress: the cost of the hook itself.
func attachEmpty() (func(), error) {
	cg, err := bpfdns.CgroupRoot("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var closers []func()
	undo := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInetEgress, ebpf.AttachCGroupInetIngress} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.CGroupSKB, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
		if err != nil {
			undo()
			return nil, err
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: at, Program: prog})
		if err != nil {
			prog.Close()
			undo()
			return nil, err
		}
		closers = append(closers, func() { l.Close(); prog.Close() })
	}
	return undo, nil
}

// dnsSockets opens n UDP sockets in namespace ns, connected to dnsmasq.
func dnsSockets(ns string, n int) ([]*net.UDPConn, error) {
	type result struct {
		s   []*net.UDPConn
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
		var out []*net.UDPConn
		for i := 0; i < n; i++ {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(serverIP), Port: 53})
			if err != nil {
				ch <- result{err: err}
				return
			}
			out = append(out, c)
		}
		ch <- result{s: out}
	}()
	r := <-ch
	return r.s, r.err
}

// queries runs one closed loop per socket (query, wait for the answer,
// next) for d and returns answers per second.
func queries(socks []*net.UDPConn, d time.Duration) float64 {
	var answered atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for si, c := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := []byte{0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 'o', 'k', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}
			buf := make([]byte, 512)
			id := uint16(si) << 12
			for time.Now().Before(end) {
				id++
				binary.BigEndian.PutUint16(q, id)
				if _, err := c.Write(q); err != nil {
					continue
				}
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				for {
					n, err := c.Read(buf)
					if err != nil {
						break
					}
					if n >= 2 && binary.BigEndian.Uint16(buf) == id {
						answered.Add(1)
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	return float64(answered.Load()) / d.Seconds()
}

func iperf(ns string, args ...string) (float64, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "iperf3", "-c", serverIP, "-J"}, args...)...).Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3: %v\n%s", err, out)
	}
	var j struct {
		End struct {
			SumReceived struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			Sum struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &j); err != nil {
		return 0, err
	}
	if j.End.SumReceived.BPS > 0 {
		return j.End.SumReceived.BPS, nil
	}
	return j.End.Sum.BPS, nil
}
