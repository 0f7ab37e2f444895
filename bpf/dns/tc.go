package dns

import (
	"fmt"

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

// Iface is how the TC programs go on an interface: l3 for a device
// without an Ethernet header, and the flags (Iface*) they read for it.
type Iface struct {
	L3    bool
	Flags uint32
}

// tcState is a Probe's TC programs and where they are attached.
type tcState struct {
	progs map[string]*ebpf.Program
	// ifaces is where they are attached (Probe.Interfaces).
	ifaces *loader.Attachments[Iface]
}

// loadTC loads the TC programs; Interfaces attaches them.
func (p *Probe) loadTC(attach string) (*tcState, error) {
	opts := loader.AttachOptions[Iface]{What: "dns"}
	switch attach {
	case "", AttachTC:
		opts.Mode = loader.HookTC
	case AttachTCX:
		// TCX where the kernel has it, first in the chain: a
		// dataplane's program after it may redirect or drop the packet.
		opts.Mode, opts.First = loader.AttachAuto, true
	default:
		return nil, fmt.Errorf("unknown attach mode %q (want %s or %s)", attach, AttachTC, AttachTCX)
	}
	progs, err := p.Load(bpfProgDnsTcIngress, bpfProgDnsTcEgress, bpfProgDnsTcIngressL3, bpfProgDnsTcEgressL3)
	if err != nil {
		return nil, fmt.Errorf("load interface programs: %w", err)
	}
	ifaces := p.maps.Ifaces
	opts.Programs = func(ifindex int, f Iface) (loader.Programs, error) {
		// The flags go in first: the programs must never run on the
		// interface without them.
		if err := ifaces.Put(uint32(ifindex), f.Flags); err != nil {
			return loader.Programs{}, fmt.Errorf("flags: %w", err)
		}
		if f.L3 {
			return loader.Programs{Pair: loader.Pair{Ingress: progs[bpfProgDnsTcIngressL3], Egress: progs[bpfProgDnsTcEgressL3]}}, nil
		}
		return loader.Programs{Pair: loader.Pair{Ingress: progs[bpfProgDnsTcIngress], Egress: progs[bpfProgDnsTcEgress]}}, nil
	}
	opts.Forget = func(ifindex int) { _ = ifaces.Delete(uint32(ifindex)) }
	a, err := loader.NewAttachments(opts)
	if err != nil {
		return nil, err
	}
	// Detached before the programs and maps are freed.
	p.AddCloser(a)
	return &tcState{progs: progs, ifaces: a}, nil
}

// Interfaces is the TC programs' attachments (HookTC), one per interface
// of the calling thread's network namespace; nil with HookCgroup.
func (p *Probe) Interfaces() *loader.Attachments[Iface] {
	if p.tc == nil {
		return nil
	}
	return p.tc.ifaces
}

// Hooks reports, per logical program, the hook it is attached by: the
// cgroup or drop programs' as the loader attached them, and for the TC
// programs (ProgramInterfaces) tcx or tc while any interface has them,
// else none.
func (p *Probe) Hooks() map[string]string {
	out := p.Object.Hooks()
	if p.tc == nil {
		return out
	}
	h, n := loader.HookNone, p.tc.ifaces.Hooks()
	for _, hook := range []string{loader.HookTCX, loader.HookTC} {
		if n[hook] > 0 {
			h = hook
			break
		}
	}
	out[ProgramInterfaces] = h
	return out
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
