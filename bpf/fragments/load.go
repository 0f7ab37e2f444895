// Package fragments loads netsonde's fragment counter: programs on every
// chosen interface (TCX, or cls_bpf below 6.6) counting IP fragments and
// ICMP frag-needed/packet-too-big, and a program on icmp_send counting the
// frag-needed messages this host sends.
package fragments

import (
	"fmt"

	"github.com/cilium/ebpf"

	nbpf "github.com/netsonde/netsonde/bpf"
	"github.com/netsonde/netsonde/bpf/loader"
)

// Key is one counter as the kernel keyed it.
type Key = bpfFragKey

// Key.What values and directions.
const (
	WhatFragment   = 0
	WhatFragNeeded = 1
	Ingress        = 0
	Egress         = 1
)

// Logical programs, as reported in netsonde_bpf_program_attached.
const (
	ProgramInterfaces = "fragments"
	ProgramICMPSend   = "icmp_send"
)

// Attach modes for interfaces.
const (
	ModeAuto = loader.AttachAuto
	ModeTCX  = loader.HookTCX
	ModeTC   = loader.HookTC
)

// Options for Load.
type Options struct {
	// OwnNetns is the cookie of the agent's network namespace.
	OwnNetns uint64
	// Mode is how interfaces are attached: auto (TCX where the kernel
	// has it, else tc), tcx or tc.
	Mode string
	// ICMPGroup is the classic icmp_send tracepoint's group ("icmp");
	// with ICMPHooks it lets tests force the hook's absence.
	ICMPGroup string
	// ICMPHooks are tried in order; empty: tp_btf, raw_tp, fentry,
	// tracepoint.
	ICMPHooks []string
	// TracefsRoot: see loader.Options.
	TracefsRoot string
	// BTF is the kernel BTF shared by the objects loaded at start-up.
	BTF *loader.KernelBTF
	// MapSizes: see loader.Options (tests).
	MapSizes map[string]uint32
}

// Probe is the loaded object: the icmp_send counter attached once, and
// interface programs attached per interface (Interfaces). In auto mode on
// a kernel with TCX, interfaces attached before EndStartup go through the
// start-up gate (loader.AttachOptions.Gate): gated tc filters at once,
// handed over to TCX in the background.
type Probe struct {
	*loader.Object
	// maps and vars are the object's, by bpf2go's names (loader.New).
	maps    bpfMaps
	vars    bpfVariables
	progs   map[string]*ebpf.Program
	ifaces  *loader.Attachments[bool]
	icmpErr error
}

// variant is one of an interface program's three builds.
type variant int

const (
	plain    variant = iota
	tcGated          // for a tc filter while the start-up gate says tc
	tcxGated         // for TCX while the start-up gate says TCX
)

// ifacePrograms names the interface programs, by kind (Ethernet, l3),
// variant and direction (ingress, egress).
func ifacePrograms() [2][3][2]string {
	return [2][3][2]string{
		{
			{bpfProgFragIngressEth, bpfProgFragEgressEth},
			{bpfProgFragIngressEthTcGated, bpfProgFragEgressEthTcGated},
			{bpfProgFragIngressEthTcxGated, bpfProgFragEgressEthTcxGated},
		},
		{
			{bpfProgFragIngressL3, bpfProgFragEgressL3},
			{bpfProgFragIngressL3TcGated, bpfProgFragEgressL3TcGated},
			{bpfProgFragIngressL3TcxGated, bpfProgFragEgressL3TcxGated},
		},
	}
}

// Load loads the programs and attaches the icmp_send counter. A missing
// icmp_send hook is reported by ICMPErr, not fatal: fragments are still
// counted.
func Load(opts Options) (*Probe, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	var specs bpfSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("embedded object: %w", err)
	}
	if err := specs.OwnNetns.Set(opts.OwnNetns); err != nil {
		return nil, fmt.Errorf("set %s: %w", specs.OwnNetns.Name, err)
	}
	c := &Probe{}
	obj, err := loader.New(spec, loader.Options{TracefsRoot: opts.TracefsRoot, BTF: opts.BTF, MapSizes: opts.MapSizes},
		&c.maps, &c.vars)
	if err != nil {
		return nil, err
	}
	c.Object = obj
	var names []string
	for _, kind := range ifacePrograms() {
		for _, v := range kind {
			names = append(names, v[:]...)
		}
	}
	c.progs, err = obj.Load(names...)
	if err != nil {
		obj.Close()
		return nil, fmt.Errorf("load interface programs: %w", err)
	}
	gate := c.maps.Gate
	c.ifaces, err = loader.NewAttachments(loader.AttachOptions[bool]{What: "fragments", Mode: opts.Mode, Gate: gate,
		Programs: func(_ int, l3 bool) (loader.Programs, error) {
			return loader.Programs{Pair: c.pair(l3, plain), TCGated: c.pair(l3, tcGated), TCXGated: c.pair(l3, tcxGated)}, nil
		},
		Forget: func(ifindex int) { _ = gate.Delete(uint32(ifindex)) },
	})
	if err != nil {
		obj.Close()
		return nil, err
	}
	// Detached before the programs and maps are freed.
	obj.AddCloser(c.ifaces)
	rungs, err := icmpRungs(obj, opts)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.icmpErr = obj.AttachFirst(ProgramICMPSend, rungs)
	return c, nil
}

func icmpRungs(obj *loader.Object, opts Options) ([]loader.Rung, error) {
	group := opts.ICMPGroup
	if group == "" {
		group = "icmp"
	}
	return loader.Ladder(opts.ICMPHooks,
		loader.Rung{Hook: loader.HookTPBTF, Program: bpfProgIcmpSendBtf, Target: "icmp_send"},
		loader.Rung{Hook: loader.HookRawTP, Program: bpfProgIcmpSendRaw, Target: "icmp_send"},
		loader.Rung{Hook: loader.HookFentry, Program: bpfProgIcmpSendFentry, Target: "__icmp_send"},
		loader.Rung{Hook: loader.HookTracepoint, Program: bpfProgIcmpSendTp, Target: group + ":icmp_send",
			Prepare: func(ev *loader.Event) error {
				return obj.SetLayout(ev, loader.Field{Name: "type", Size: 4, Variable: bpfVarTpOffType},
					loader.Field{Name: "code", Size: 4, Variable: bpfVarTpOffCode})
			}})
}

// ICMPErr says why the icmp_send counter is not attached (nil when it is).
func (c *Probe) ICMPErr() error { return c.icmpErr }

// Interfaces is the interface programs' attachments, by l3 (the programs
// for devices without an Ethernet header), of the calling thread's network
// namespace.
func (c *Probe) Interfaces() *loader.Attachments[bool] { return c.ifaces }

func (c *Probe) pair(l3 bool, v variant) loader.Pair {
	kind := 0
	if l3 {
		kind = 1
	}
	names := ifacePrograms()[kind][v]
	return loader.Pair{Ingress: c.progs[names[0]], Egress: c.progs[names[1]]}
}

// Read returns the counts since load.
func (c *Probe) Read() (map[Key]uint64, error) {
	return nbpf.SumPerCPU[Key](c.maps.Frags)
}

// Full returns how many packets found the counter map full (each one's
// count is lost).
func (c *Probe) Full() (uint64, error) {
	return nbpf.SumArraySlot(c.maps.Full, 0)
}

// Forget deletes the counters of an interface that is gone.
func (c *Probe) Forget(keys []Key) {
	m := c.maps.Frags
	for _, k := range keys {
		_ = m.Delete(k)
	}
}

// RunStats sums the kernel's run-time accounting (BPF_ENABLE_STATS must be
// on) over the interface programs: total run time in ns and run count.
func (c *Probe) RunStats() (uint64, uint64) {
	var ns, n uint64
	for _, p := range c.progs {
		if st, err := p.Stats(); err == nil {
			ns += uint64(st.Runtime.Nanoseconds())
			n += st.RunCount
		}
	}
	return ns, n
}
