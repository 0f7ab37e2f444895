// Command hookcost measures, in one run, what each of netsonde's tracing
// hooks costs per event next to an empty tp_btf program attached to the
// same tracepoint at the same time (so both see exactly the same events):
// the kernel's own accounting (BPF_ENABLE_STATS, run time / run count) for
// the TCP retransmit counter and the ext4 fsync tracer. The drop counter
// has its own, longer benchmark (dropcost); the TCX fragment programs are
// in tcxcost. Prints a markdown table for BENCHMARKS.md. Needs root.
//
//	go run ./hack/bench/hookcost -conns 200 -fsyncs 3000
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/bpf/fsynctrace"
	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/bpf/tcpretrans"
	"github.com/netsonde/netsonde/hack/bench/benchkit"
)

func main() {
	conns := flag.Int("conns", 200, "TCP connections whose data is dropped (retransmits)")
	fsyncs := flag.Int("fsyncs", 3000, "write+fdatasync pairs, as a process named etcd")
	dir := flag.String("dir", "/var/tmp", "where to fsync (ext4 for the default hook)")
	flag.Parse()
	if err := run(*conns, *fsyncs, *dir); err != nil {
		log.Fatal(err)
	}
}

// empty attaches a program that returns at once to a BTF tracepoint.
func empty(tracepoint string) (*ebpf.Program, link.Link, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: tracepoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("empty program on %s: %w", tracepoint, err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("attach empty program on %s: %w", tracepoint, err)
	}
	return p, l, nil
}

type pair struct {
	name, hook    string
	prog, control *ebpf.Program
	t0, c0        time.Duration
	n0, m0        uint64
}

func (p *pair) start() {
	p.t0, p.n0 = benchkit.ProgStats(p.prog)
	p.c0, p.m0 = benchkit.ProgStats(p.control)
}

func (p *pair) row() string {
	t1, n1 := benchkit.ProgStats(p.prog)
	c1, m1 := benchkit.ProgStats(p.control)
	if n1 == p.n0 || m1 == p.m0 {
		return fmt.Sprintf("| %s | %s | no events | | | |", p.name, p.hook)
	}
	ns := float64(t1-p.t0) / float64(n1-p.n0)
	cs := float64(c1-p.c0) / float64(m1-p.m0)
	return fmt.Sprintf("| %s | %s | %d | %.0f | %.0f | %.2f |", p.name, p.hook, n1-p.n0, cs, ns, ns/cs)
}

func run(conns, fsyncs int, dir string) error {
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return fmt.Errorf("enable BPF stats: %w", err)
	}
	defer stats.Close()

	retrans, err := tcpretrans.Load(tcpretrans.Options{Hooks: []string{loader.HookTPBTF}})
	if err != nil {
		return fmt.Errorf("retransmit counter: %w", err)
	}
	defer retrans.Close()
	tracer, err := fsynctrace.Load(fsynctrace.Options{Comms: []string{"etcd"}, Hooks: []string{loader.HookTPBTF},
		Bounds: [fsynctrace.NumBounds]uint64{}})
	if err != nil {
		return fmt.Errorf("fsync tracer: %w", err)
	}
	defer tracer.Close()

	var pairs []*pair
	for _, h := range []struct {
		name, tp string
		obj      *loader.Object
	}{
		{tcpretrans.ProgramSkb, "tcp_retransmit_skb", retrans.Object},
		{"ext4_sync_file_enter", "ext4_sync_file_enter", tracer.Object},
		{"ext4_sync_file_exit", "ext4_sync_file_exit", tracer.Object},
	} {
		prog := h.obj.Active(h.name)
		if prog == nil {
			return fmt.Errorf("%s not attached", h.name)
		}
		ctl, l, err := empty(h.tp)
		if err != nil {
			return err
		}
		defer ctl.Close()
		defer l.Close()
		p := &pair{name: h.name, hook: h.obj.Hooks()[h.name], prog: prog, control: ctl}
		p.start()
		pairs = append(pairs, p)
	}

	if err := retransmits(conns); err != nil {
		return err
	}
	if err := fsyncAs("etcd", dir, fsyncs); err != nil {
		return err
	}

	fmt.Printf("retransmits from %d connections whose data is dropped (route rto_min 10ms); %d write+fdatasync in %s as \"etcd\"; %s\n\n",
		conns, fsyncs, dir, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| program | hook | events | empty tp_btf, ns per run | netsonde, ns per run | ratio |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, p := range pairs {
		fmt.Println(p.row())
	}
	return nil
}

// retransmits opens connections between two namespaces, then drops their
// data so that the sender retransmits, fast (a 10 ms minimum RTO).
func retransmits(conns int) error {
	a, b := fmt.Sprintf("hca-%d", os.Getpid()), fmt.Sprintf("hcb-%d", os.Getpid())
	defer exec.Command("ip", "netns", "del", a).Run()
	defer exec.Command("ip", "netns", "del", b).Run()
	for _, c := range [][]string{
		{"ip", "netns", "add", a}, {"ip", "netns", "add", b},
		{"ip", "-n", a, "link", "add", "hc0", "type", "veth", "peer", "name", "hc1", "netns", b},
		{"ip", "-n", a, "addr", "add", "198.18.78.1/24", "dev", "hc0"},
		{"ip", "-n", b, "addr", "add", "198.18.78.2/24", "dev", "hc1"},
		{"ip", "-n", a, "link", "set", "hc0", "up"}, {"ip", "-n", b, "link", "set", "hc1", "up"},
		{"ip", "-n", a, "route", "replace", "198.18.78.0/24", "dev", "hc0", "rto_min", "10ms"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v: %s", c, err, out)
		}
	}
	var ln net.Listener
	var cs []net.Conn
	err := benchkit.InNetns(b, func() (err error) { ln, err = net.Listen("tcp4", "198.18.78.2:9000"); return err })
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	if err := benchkit.InNetns(a, func() error {
		for range conns {
			c, err := net.Dial("tcp4", "198.18.78.2:9000")
			if err != nil {
				return err
			}
			cs = append(cs, c)
		}
		return nil
	}); err != nil {
		return err
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	if out, err := exec.Command("ip", "netns", "exec", b, "nft", "add table inet h; add chain inet h in { type filter hook input priority 0; }; add rule inet h in tcp dport 9000 drop").CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, out)
	}
	for _, c := range cs {
		c.Write(make([]byte, 100))
	}
	time.Sleep(3 * time.Second)
	return nil
}

// fsyncAs writes and fdatasyncs on a thread named comm, as etcd would.
func fsyncAs(comm, dir string, n int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread keeps its name
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafePtr(comm)), 0, 0, 0); err != nil {
			errc <- fmt.Errorf("name thread: %w", err)
			return
		}
		f, err := os.CreateTemp(dir, "hookcost-")
		if err != nil {
			errc <- err
			return
		}
		defer os.Remove(f.Name())
		defer f.Close()
		buf := make([]byte, 4096)
		for range n {
			if _, err := f.WriteAt(buf, 0); err != nil {
				errc <- err
				return
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				errc <- errors.Join(errors.New("fdatasync"), err)
				return
			}
		}
		errc <- nil
	}()
	return <-errc
}
