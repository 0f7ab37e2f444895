// Command dnscost measures what netsonde's DNS programs cost, in one run:
// iperf3 TCP and 64-byte UDP throughput between two pods of a node
// (non-DNS traffic: the programs return after the port check), and DNS
// queries per second answered by dnsmasq at full rate, with the TC hook
// (the agent's default: TCX on the node's interfaces) and the cgroup hook
// (cgroup_skb on the cgroup v2 root).
// Each round runs every configuration once, in an order that rotates from
// round to round: no programs, an empty cgroup_skb program (the hook's own
// cost), with -before older builds' object files, and this build's
// programs; each configuration's ratio is against the same round's run
// without programs, and the median of the rounds' ratios is reported with
// their spread (the per-round ratios go to stderr). The kernel's own
// per-run accounting (BPF_ENABLE_STATS) is taken in separate runs. Prints
// a markdown table for BENCHMARKS.md. Needs root, iperf3 and dnsmasq.
//
//	go run ./hack/bench/dnscost -pairs 6 -seconds 2
//	git show main:bpf/dns/bpf_bpfel.o > /tmp/before.o
//	go run ./hack/bench/dnscost -tests dns -pairs 20 -seconds 1 -before /tmp/before.o
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	bpfdns "github.com/netsonde/netsonde/bpf/dns"
	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/internal/decode"

	"github.com/netsonde/netsonde/hack/bench/benchkit"
)

func main() {
	rounds := flag.Int("pairs", 6, "rounds per test, each running every configuration once in rotating order")
	seconds := flag.Float64("seconds", 2, "length of each run (iperf3 rounds it up to whole seconds)")
	only := flag.String("tests", "tcp,udp,dns", "tests to run, comma-separated: tcp, udp, dns")
	before := flag.String("before", "", "also run older builds' object files, comma-separated, e.g. from git show main:bpf/dns/bpf_bpfel.o > /tmp/before.o")
	maxInflight := flag.Uint("max-inflight", 0, "size of the in-flight table (--dns.max-inflight); 0: the agent's default")
	topology := flag.String("topology", "node", "veth: client and server namespaces joined by one veth pair; node: each behind its own veth to a third namespace that routes between them, as two pods on one node")
	flag.Parse()
	if *topology != "veth" && *topology != "node" {
		log.Fatalf("-topology: want veth or node, got %q", *topology)
	}
	if err := run(*rounds, *seconds, *only, *before, *topology, uint32(*maxInflight)); err != nil {
		log.Fatal(err)
	}
}

const (
	clientIP = "198.18.91.1"
	serverIP = "198.18.91.2"
	nodeIP   = "198.18.91.254"
)

func run(rounds int, seconds float64, only, before, topology string, maxInflight uint32) error {
	sfx := fmt.Sprint(os.Getpid())
	a, b, node := "dnsa"+sfx, "dnsb"+sfx, "dnsn"+sfx
	spaces := []string{a, b}
	if topology == "node" {
		spaces = append(spaces, node)
	}
	for _, ns := range spaces {
		if err := benchkit.Sh("ip", "netns", "add", ns); err != nil {
			return err
		}
		defer benchkit.Sh("ip", "netns", "del", ns)
	}
	setup := [][]string{
		{"ip", "link", "add", "dx0", "netns", a, "type", "veth", "peer", "name", "dx1", "netns", b},
		{"ip", "-n", a, "addr", "add", clientIP + "/24", "dev", "dx0"},
		{"ip", "-n", b, "addr", "add", serverIP + "/24", "dev", "dx1"},
	}
	if topology == "node" {
		// Two pods on one node: each namespace's eth0 is a veth whose
		// other end is in the node's namespace, which routes between
		// them (/32 routes to each pod, as CNIs like Calico set up).
		setup = [][]string{
			{"ip", "link", "add", "dx0", "netns", a, "type", "veth", "peer", "name", "vpa", "netns", node},
			{"ip", "link", "add", "dx1", "netns", b, "type", "veth", "peer", "name", "vpb", "netns", node},
			{"ip", "-n", a, "addr", "add", clientIP + "/32", "dev", "dx0"},
			{"ip", "-n", b, "addr", "add", serverIP + "/32", "dev", "dx1"},
			{"ip", "-n", node, "addr", "add", nodeIP + "/32", "dev", "vpa"},
			{"ip", "-n", node, "addr", "add", nodeIP + "/32", "dev", "vpb"},
			{"ip", "-n", node, "link", "set", "vpa", "up"},
			{"ip", "-n", node, "link", "set", "vpb", "up"},
			{"ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
			{"ip", "-n", node, "route", "add", clientIP + "/32", "dev", "vpa"},
			{"ip", "-n", node, "route", "add", serverIP + "/32", "dev", "vpb"},
			{"ip", "-n", a, "link", "set", "dx0", "up"},
			{"ip", "-n", b, "link", "set", "dx1", "up"},
			{"ip", "-n", a, "route", "add", nodeIP + "/32", "dev", "dx0"},
			{"ip", "-n", b, "route", "add", nodeIP + "/32", "dev", "dx1"},
			{"ip", "-n", a, "route", "add", "default", "via", nodeIP, "dev", "dx0", "onlink"},
			{"ip", "-n", b, "route", "add", "default", "via", nodeIP, "dev", "dx1", "onlink"},
		}
	}
	setup = append(setup,
		[]string{"ip", "-n", a, "link", "set", "dx0", "up"},
		[]string{"ip", "-n", b, "link", "set", "dx1", "up"},
		[]string{"ip", "-n", b, "link", "set", "lo", "up"})
	for _, c := range setup {
		if err := benchkit.Sh(c...); err != nil {
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
	// The CPU time the test's own work takes: this process (the DNS
	// client, and the packets' softirq work done in its context),
	// iperf3 clients (waited children), the servers, and ksoftirqd.
	// Another load on the machine changes how much CPU the test gets,
	// much less what each answer costs.
	ksoftirqd, _ := filepath.Glob("/proc/[0-9]*/comm")
	pids := []int{iperfSrv.Process.Pid, dnsmasq.Process.Pid}
	for _, f := range ksoftirqd {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), "ksoftirqd/") {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	cpu := func() time.Duration {
		var t time.Duration
		for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
			var ru unix.Rusage
			if unix.Getrusage(who, &ru) == nil {
				t += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
		}
		for _, pid := range pids {
			t += schedstat(pid)
		}
		return t
	}
	socks, err := dnsSockets(a, 8)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()

	d := time.Duration(seconds * float64(time.Second))
	secs := fmt.Sprint(int(math.Ceil(seconds)))
	all := []struct {
		key, name, unit string
		scale           float64
		run             func() (float64, error)
	}{
		{"tcp", "TCP (iperf3)", "Gbit/s", 1e9, func() (float64, error) { return benchkit.Iperf(a, serverIP, "-t", secs) }},
		{"udp", "UDP 64-byte (iperf3)", "Gbit/s", 1e9, func() (float64, error) {
			return benchkit.Iperf(a, serverIP, "-u", "-b", "0", "-l", "64", "-t", secs)
		}},
		{"dns", "DNS queries through dnsmasq", "answers/s", 1, func() (float64, error) { return queries(socks, d), nil }},
	}
	tests := all[:0:0]
	for _, tc := range all {
		if strings.Contains(","+only+",", ","+tc.key+",") {
			tests = append(tests, tc)
		}
	}
	// The configurations: none, an empty cgroup_skb program (the hook's
	// own cost), with -before older builds' objects, and this build's
	// programs.
	type config struct {
		name   string
		attach func() (func(), error)
		// measured attaches as attach does, and also returns the
		// kernel's run accounting of the programs (nil: none taken).
		measured func() (func(), runStats, error)
	}
	loadMeasured := func(o bpfdns.Options) func() (func(), runStats, error) {
		o.MaxInflight = maxInflight
		return func() (func(), runStats, error) {
			p, err := loadProbe(o, node)
			if err != nil {
				return nil, nil, err
			}
			return func() { p.Close() }, p.RunStats, nil
		}
	}
	load := func(o bpfdns.Options) config {
		m := loadMeasured(o)
		return config{attach: func() (func(), error) { c, _, err := m(); return c, err }, measured: m}
	}
	named := func(name string, c config) config { c.name = name; return c }
	configs := []config{
		{name: "without", attach: func() (func(), error) { return func() {}, nil }},
		{name: "empty cgroup_skb programs", attach: attachEmpty},
	}
	// The agent's hook for this topology: tc on the node's interfaces
	// (there is no node namespace with -topology veth: cgroup).
	hook := bpfdns.HookCgroup
	if topology == "node" {
		hook = bpfdns.HookTC
		// Their accounting is the accounting's own cost on a run.
		for _, mode := range []string{bpfdns.AttachTC, bpfdns.AttachTCX} {
			empty := func() (func(), runStats, error) { return attachEmptyTC(node, mode, "vpa", "vpb") }
			configs = append(configs, config{name: "empty programs on the node's two veths by " + mode,
				attach: func() (func(), error) { c, _, err := empty(); return c, err }, measured: empty})
		}
	}
	emptyIdx := len(configs) - 2 // the empty programs by tc, if any
	if topology != "node" {
		emptyIdx = -1
	}
	if before != "" {
		for _, o := range strings.Split(before, ",") {
			configs = append(configs, named("netsonde's, "+o, load(bpfdns.Options{Hook: hook, Object: o})))
		}
	}
	if hook == bpfdns.HookTC {
		configs = append(configs, named("netsonde's, cgroup hook (this build)", load(bpfdns.Options{Hook: bpfdns.HookCgroup})))
	}
	configs = append(configs, named("netsonde's, "+hook+" hook (this build)", load(bpfdns.Options{Hook: hook})))
	if hook == bpfdns.HookTC {
		configs = append(configs, named("netsonde's, tc hook by tcx (this build)", load(bpfdns.Options{Hook: hook, Attach: bpfdns.AttachTCX})))
	}
	type res struct {
		vals, ratios [][]float64 // by configuration, one per round
		effRatios    [][]float64 // ratios of work per CPU-second
		skipped      int         // rounds left out: a run measured 0
		nsPerRun     [][]float64 // by configuration with programs
		share        [][]float64 // programs' run time / the run's CPU time
	}
	results := make([]*res, len(tests))
	for ti, tc := range tests {
		r := &res{vals: make([][]float64, len(configs)), ratios: make([][]float64, len(configs)), nsPerRun: make([][]float64, len(configs)), share: make([][]float64, len(configs)), effRatios: make([][]float64, len(configs))}
		results[ti] = r
		for i := 0; i < rounds; i++ {
			// Rotate which configuration goes first, so drift hits all
			// alike; each round's ratios are against that round's run
			// without programs.
			order := make([]int, len(configs))
			for k := range order {
				order[k] = (k + i) % len(configs)
			}
			v := make([]float64, len(configs))
			eff := make([]float64, len(configs))
			for _, cfg := range order {
				closer, err := configs[cfg].attach()
				if err != nil {
					return err
				}
				c0 := cpu()
				x, err := tc.run()
				eff[cfg] = x / (cpu() - c0).Seconds()
				closer()
				if err != nil {
					return err
				}
				v[cfg] = x
			}
			if slices.Contains(v, 0) {
				// iperf3 measured nothing (it happens with 1 s runs
				// on a loaded machine): no ratio from this round.
				fmt.Fprintf(os.Stderr, "%s round %d: a run measured 0, round left out\n", tc.key, i+1)
				r.skipped++
				continue
			}
			for c := range configs {
				r.vals[c] = append(r.vals[c], v[c])
				r.ratios[c] = append(r.ratios[c], v[c]/v[0])
				r.effRatios[c] = append(r.effRatios[c], eff[c]/eff[0])
			}
			fmt.Fprintf(os.Stderr, "%s round %d:", tc.key, i+1)
			for c := range configs {
				fmt.Fprintf(os.Stderr, " %.3f (%.3f)", v[c]/v[0], eff[c]/eff[0])
			}
			fmt.Fprintln(os.Stderr)
		}
		// Per-run cost apart: the accounting adds two clock reads to
		// every run, which must not weigh on the rounds above. Three
		// rounds of it, the median reported.
		for i := 0; i < 3; i++ {
			for c := range configs {
				if configs[c].measured == nil {
					continue
				}
				ns, share, err := nsPerRun(configs[c].measured, tc.run, cpu)
				if err != nil {
					return err
				}
				r.nsPerRun[c] = append(r.nsPerRun[c], ns)
				r.share[c] = append(r.share[c], share)
			}
		}
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
	}
	spread := func(v []float64) string {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return fmt.Sprintf("%.3f [%.3f–%.3f]", med(s), s[0], s[len(s)-1])
	}
	fmt.Printf("%d rounds per test, %g s each run, configurations in rotating order, topology %s (node: two pods behind veths of a node namespace; veth: one veth pair), cgroup_skb programs on the cgroup v2 root (every socket of the machine), TC programs on every interface of the node; medians, ratios against the same round's run without programs (min–max in brackets); %s\n\n",
		rounds, seconds, topology, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Println("| test | configuration | median | median ratio to without [min–max] | per CPU-second: median ratio to without [min–max] | kernel accounting, ns per program run | programs' share of the work's CPU time [min–max] (1 − share) |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for ti, tc := range tests {
		r := results[ti]
		if len(r.vals[0]) == 0 {
			fmt.Printf("| %s | every round left out | | | | | |\n", tc.name)
			continue
		}
		if r.skipped > 0 {
			fmt.Printf("| %s | %d of %d rounds left out (a run measured 0) | | | | | |\n", tc.name, r.skipped, rounds)
		}
		for c, cf := range configs {
			ratio, eff, ns, share := "", "", "", ""
			if c > 0 {
				ratio, eff = spread(r.ratios[c]), spread(r.effRatios[c])
			}
			if configs[c].measured != nil && len(r.nsPerRun[c]) > 0 {
				s := append([]float64(nil), r.nsPerRun[c]...)
				sort.Float64s(s)
				ns = fmt.Sprintf("%.0f [%.0f–%.0f]", med(s), s[0], s[len(s)-1])
				sh := append([]float64(nil), r.share[c]...)
				sort.Float64s(sh)
				share = fmt.Sprintf("%.1f%% [%.1f–%.1f] (%.3f)", 100*med(sh), 100*sh[0], 100*sh[len(sh)-1], 1-med(sh))
				// Less what an empty program's run costs under the
				// accounting (its clock reads and the dispatch).
				if e := emptyIdx; e >= 0 && e != c && len(r.nsPerRun[e]) > 0 {
					base := med(r.nsPerRun[e])
					if n := med(s); n > base {
						net := med(sh) * (n - base) / n
						share += fmt.Sprintf("; less an empty program's %.0f ns per run: %.1f%% (%.3f)", base, 100*net, 1-net)
					}
				}
			}
			fmt.Printf("| %s | %s | %.2f %s | %s | %s | %s | %s |\n", tc.name, cf.name, med(r.vals[c])/tc.scale, tc.unit, ratio, eff, ns, share)
		}
	}
	return nil
}

// nsPerRun loads the programs with BPF_ENABLE_STATS on, runs the test
// once and returns the kernel's accounting: ns per run of the programs
// that look at packets, and their total run time as a share of the CPU
// time the run's work took (cpu): what they take from a CPU-bound rate,
// an upper bound, as the accounting's own clock reads are in it.
func nsPerRun(attach func() (func(), runStats, error), run func() (float64, error), cpu func() time.Duration) (float64, float64, error) {
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return 0, 0, fmt.Errorf("enable BPF stats: %w", err)
	}
	defer stats.Close()
	closer, runs, err := attach()
	if err != nil {
		return 0, 0, err
	}
	defer closer()
	c0 := cpu()
	if _, err := run(); err != nil {
		return 0, 0, err
	}
	used := cpu() - c0
	ns, n := runs()
	if n == 0 || used <= 0 {
		return 0, 0, nil
	}
	return float64(ns) / float64(n), float64(ns) / float64(used.Nanoseconds()), nil
}

// attachEmpty attaches programs that only return 1 to the cgroup v2
// root's egress and ingress: the cost of the hook itself.
func attachEmpty() (func(), error) {
	cg, err := decode.CgroupRoot("/proc/self/mountinfo")
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

// loadProbe loads this build's programs (or o.Object's) as the agent
// does: with the TC hook, on every interface of the node's namespace, a
// veth to a pod marked as a pod's.
func loadProbe(o bpfdns.Options, node string) (*bpfdns.Probe, error) {
	p, err := bpfdns.Load(o)
	if err != nil || o.Hook != bpfdns.HookTC {
		return p, err
	}
	err = benchkit.InNetns(node, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			flags := uint32(0)
			if strings.HasPrefix(i.Name, "vp") {
				flags = bpfdns.IfacePod
			}
			if err := p.Interfaces().Attach(i.Index, bpfdns.Iface{Flags: flags}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// runStats returns the kernel's accounting of some programs: total run
// time in ns and runs.
type runStats func() (uint64, uint64)

// attachEmptyTC attaches programs that only return TCX_NEXT (TC_ACT_UNSPEC)
// to the ingress and egress of the named interfaces of namespace ns, by
// mode (bpfdns.AttachTC: clsact filters, or AttachTCX): the cost of the
// hook on a pod's veth, and with BPF_ENABLE_STATS the accounting's own
// cost per run.
func attachEmptyTC(ns, mode string, ifaces ...string) (func(), runStats, error) {
	tc, err := loader.NewTC("bench")
	if err != nil {
		return nil, nil, err
	}
	var links []io.Closer
	var progs []*ebpf.Program
	undo := func() {
		for _, l := range links {
			l.Close()
		}
		for _, p := range progs {
			p.Close()
		}
	}
	err = benchkit.InNetns(ns, func() error {
		for _, name := range ifaces {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			var pair [2]*ebpf.Program
			for i := range pair {
				prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
					Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
				if err != nil {
					return err
				}
				progs = append(progs, prog)
				pair[i] = prog
			}
			var l io.Closer
			if mode == bpfdns.AttachTCX {
				l, err = loader.AttachTCX(ifc.Index, loader.Pair{Ingress: pair[0], Egress: pair[1]})
			} else {
				l, err = tc.Attach(ifc.Index, loader.Pair{Ingress: pair[0], Egress: pair[1]})
			}
			if err != nil {
				return err
			}
			links = append(links, l)
		}
		return nil
	})
	if err != nil {
		undo()
		return nil, nil, err
	}
	stats := func() (uint64, uint64) {
		var ns, n uint64
		for _, p := range progs {
			if st, err := p.Stats(); err == nil {
				ns += uint64(st.Runtime.Nanoseconds())
				n += st.RunCount
			}
		}
		return ns, n
	}
	return undo, stats, nil
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

// schedstat returns the time a task has run (the first field of
// /proc/PID/schedstat, in ns, exact where /proc/PID/stat counts ticks).
func schedstat(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(n)
}
