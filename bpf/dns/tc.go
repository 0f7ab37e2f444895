package dns

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/netsonde/netsonde/bpf/loader"
)

// Where the programs look (Options.Hook).
const (
	// HookTC: TC programs on every interface of the node's namespace,
	// attached one by one with Attach (TCX on 6.6+, else a clsact filter).
	// A non-DNS packet costs a port check on the interfaces it crosses,
	// and no socket pays anything.
	HookTC = "tc"
	// HookCgroup: cgroup_skb programs on the cgroup v2 root, which see
	// every socket of the node, pods without a veth included, at the cost
	// of a program run for every packet of every socket.
	HookCgroup = "cgroup"
)

// ProgramInterfaces is the logical name of the TC programs in
// netsonde_bpf_program_attached.
const ProgramInterfaces = "dns_tc"

// How the TC programs go on an interface (Options.Attach).
const (
	// AttachTC: a direct-action cls_bpf filter on the interface's clsact
	// qdisc (created where none is), named after the agent so that a dead
	// agent's filters are found and removed. Attaching and detaching take
	// well under a millisecond per interface.
	AttachTC = "tc"
	// AttachTCX: TCX links (6.6+; else AttachTC), ahead of every other
	// program on the interface, so that none can drop or redirect a packet
	// before it is seen. Each attach and detach waits for an RCU grace
	// period under the RTNL lock, one interface after another: 20 to 27 ms
	// per interface on a loaded 2-CPU machine, 27 s for 1,000 interfaces.
	AttachTCX = "tcx"
)

// Interface flags, as IFACE_* in dns.c.
const (
	// IfacePod: the host side of a veth whose peer is in another network
	// namespace. Its ingress carries the pod's queries, its egress the
	// answers to them.
	IfacePod uint32 = 1
	// IfaceEnslaved: a port of a bridge, bond, team or VRF, whose master's
	// egress has already seen the host's packets.
	IfaceEnslaved uint32 = 2
)

// tcState is a Probe's TC programs and where they are attached.
type tcState struct {
	progs map[string]*ebpf.Program
	tc    *loader.TC

	mu sync.Mutex
	// tcx: 0 not tried yet, 1 works, -1 legacy tc (AttachTC, or the
	// kernel has no TCX).
	tcx      int
	attached map[int]*tcIface
	closed   bool
}

type tcIface struct {
	closer io.Closer
	hook   string
	flags  uint32
}

var tcPrograms = []string{"dns_tc_ingress", "dns_tc_egress", "dns_tc_ingress_l3", "dns_tc_egress_l3"}

func loadTC(obj *loader.Object, attach string) (*tcState, error) {
	var tcx int
	switch attach {
	case "", AttachTC:
		tcx = -1
	case AttachTCX:
	default:
		return nil, fmt.Errorf("unknown attach mode %q (want %s or %s)", attach, AttachTC, AttachTCX)
	}
	progs, err := obj.Load(tcPrograms...)
	if err != nil {
		return nil, fmt.Errorf("load interface programs: %w", err)
	}
	tc, err := loader.NewTC("dns")
	if err != nil {
		return nil, err
	}
	t := &tcState{progs: progs, tc: tc, attached: map[int]*tcIface{}, tcx: tcx}
	// Detached before the programs and maps are freed.
	obj.AddCloser(closeFunc(t.close))
	return t, nil
}

func (t *tcState) pair(l3 bool) loader.Pair {
	if l3 {
		return loader.Pair{Ingress: t.progs["dns_tc_ingress_l3"], Egress: t.progs["dns_tc_egress_l3"]}
	}
	return loader.Pair{Ingress: t.progs["dns_tc_ingress"], Egress: t.progs["dns_tc_egress"]}
}

// Attach puts the TC programs on an interface of the calling thread's
// network namespace (l3: a device without an Ethernet header), marked with
// flags (Iface*). On an interface already attached it only updates the
// flags. Safe for concurrent use on different interfaces.
func (p *Probe) Attach(ifindex int, l3 bool, flags uint32) error {
	t := p.tc
	if t == nil {
		return errors.New("dns programs not loaded for interfaces (hook cgroup)")
	}
	// The flags go in first: the programs must never run on the
	// interface without them.
	if err := p.Map("ifaces").Put(uint32(ifindex), flags); err != nil {
		return fmt.Errorf("interface %d flags: %w", ifindex, err)
	}
	t.mu.Lock()
	if f, ok := t.attached[ifindex]; ok || t.closed {
		if ok {
			f.flags = flags
		}
		t.mu.Unlock()
		return nil
	}
	tcx := t.tcx
	t.mu.Unlock()

	f := &tcIface{flags: flags, hook: loader.HookTCX}
	var err error
	if tcx >= 0 {
		// First in the chain: a dataplane's program after it may
		// redirect or drop the packet.
		f.closer, err = loader.AttachTCXFirst(ifindex, t.pair(l3))
		if errors.Is(err, ebpf.ErrNotSupported) {
			t.mu.Lock()
			t.tcx = -1
			t.mu.Unlock()
			tcx = -1
		} else if err == nil {
			t.mu.Lock()
			t.tcx = 1
			t.mu.Unlock()
		}
	}
	if tcx < 0 {
		f.hook = loader.HookTC
		f.closer, err = t.tc.Attach(ifindex, t.pair(l3))
	}
	if err != nil {
		_ = p.Map("ifaces").Delete(uint32(ifindex))
		return fmt.Errorf("interface %d: %w", ifindex, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		f.closer.Close()
		return nil
	}
	t.attached[ifindex] = f
	return nil
}

// Detach takes the programs off an interface (one that was deleted: its
// attachments are gone in the kernel already; this frees ours).
func (p *Probe) Detach(ifindex int) {
	t := p.tc
	if t == nil {
		return
	}
	t.mu.Lock()
	f, ok := t.attached[ifindex]
	delete(t.attached, ifindex)
	t.mu.Unlock()
	if ok {
		f.closer.Close()
		_ = p.Map("ifaces").Delete(uint32(ifindex))
	}
}

// Attached returns the interfaces with programs and their flags.
func (p *Probe) Attached() map[int]uint32 {
	out := map[int]uint32{}
	t := p.tc
	if t == nil {
		return out
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, f := range t.attached {
		out[i] = f.flags
	}
	return out
}

// Hooks reports, per logical program, the hook it is attached by: the
// cgroup or drop programs' as the loader attached them, and for the TC
// programs (ProgramInterfaces) tcx or tc while any interface has them,
// else none.
func (p *Probe) Hooks() map[string]string {
	out := p.Object.Hooks()
	t := p.tc
	if t == nil {
		return out
	}
	h := loader.HookNone
	t.mu.Lock()
	for _, f := range t.attached {
		h = f.hook
		break
	}
	t.mu.Unlock()
	out[ProgramInterfaces] = h
	return out
}

// close detaches every interface.
func (t *tcState) close() error {
	t.mu.Lock()
	t.closed = true
	closers := make([]io.Closer, 0, len(t.attached))
	for i, f := range t.attached {
		closers = append(closers, f.closer)
		delete(t.attached, i)
	}
	t.mu.Unlock()
	return loader.CloseAll(closers)
}

// RunStats sums the kernel's run-time accounting (BPF_ENABLE_STATS must be
// on) over the programs that look at packets: total ns and runs.
func (p *Probe) RunStats() (uint64, uint64) {
	progs := []*ebpf.Program{p.Active(ProgramEgress), p.Active(ProgramIngress)}
	if p.tc != nil {
		for _, prog := range p.tc.progs {
			progs = append(progs, prog)
		}
	}
	var ns, n uint64
	for _, prog := range progs {
		if prog == nil {
			continue
		}
		if st, err := prog.Stats(); err == nil {
			ns += uint64(st.Runtime.Nanoseconds())
			n += st.RunCount
		}
	}
	return ns, n
}

// closeFunc makes a function an io.Closer.
type closeFunc func() error

func (f closeFunc) Close() error { return f() }
