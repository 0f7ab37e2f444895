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

// Counter is the loaded object: the icmp_send counter attached once, and
// interface programs attached per interface (Interfaces). In auto mode on
// a kernel with TCX, interfaces attached before EndStartup go through the
// start-up gate (loader.AttachOptions.Gate): gated tc filters at once,
// handed over to TCX in the background.
type Counter struct {
	*loader.Object
	progs   map[string]*ebpf.Program
	ifaces  *loader.Attachments[bool]
	icmpErr error
}

// Load loads the programs and attaches the icmp_send counter. A missing
// icmp_send hook is reported by ICMPErr, not fatal: fragments are still
// counted.
func Load(opts Options) (*Counter, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	if err := spec.Variables["own_netns"].Set(opts.OwnNetns); err != nil {
		return nil, fmt.Errorf("set own_netns: %w", err)
	}
	obj, err := loader.New(spec, loader.Options{TracefsRoot: opts.TracefsRoot, BTF: opts.BTF, MapSizes: opts.MapSizes})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, kind := range []string{"eth", "l3"} {
		for _, dir := range []string{"ingress", "egress"} {
			for _, v := range []string{"", "_tc_gated", "_tcx_gated"} {
				names = append(names, "frag_"+dir+"_"+kind+v)
			}
		}
	}
	progs, err := obj.Load(names...)
	if err != nil {
		obj.Close()
		return nil, fmt.Errorf("load interface programs: %w", err)
	}
	c := &Counter{Object: obj, progs: progs}
	gate := obj.Map("gate")
	c.ifaces, err = loader.NewAttachments(loader.AttachOptions[bool]{What: "fragments", Mode: opts.Mode, Gate: gate,
		Programs: func(_ int, l3 bool) (loader.Programs, error) {
			return loader.Programs{Pair: c.pair(l3, ""), TCGated: c.pair(l3, "_tc_gated"), TCXGated: c.pair(l3, "_tcx_gated")}, nil
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
		loader.Rung{Hook: loader.HookTPBTF, Program: "icmp_send_btf", Target: "icmp_send"},
		loader.Rung{Hook: loader.HookRawTP, Program: "icmp_send_raw", Target: "icmp_send"},
		loader.Rung{Hook: loader.HookFentry, Program: "icmp_send_fentry", Target: "__icmp_send"},
		loader.Rung{Hook: loader.HookTracepoint, Program: "icmp_send_tp", Target: group + ":icmp_send",
			Prepare: func(ev *loader.Event) error {
				return obj.SetLayout(ev, loader.Field{Name: "type", Size: 4, Variable: "tp_off_type"},
					loader.Field{Name: "code", Size: 4, Variable: "tp_off_code"})
			}})
}

// ICMPErr says why the icmp_send counter is not attached (nil when it is).
func (c *Counter) ICMPErr() error { return c.icmpErr }

// Interfaces is the interface programs' attachments, by l3 (the programs
// for devices without an Ethernet header), of the calling thread's network
// namespace.
func (c *Counter) Interfaces() *loader.Attachments[bool] { return c.ifaces }

func (c *Counter) pair(l3 bool, variant string) loader.Pair {
	kind := "eth"
	if l3 {
		kind = "l3"
	}
	return loader.Pair{Ingress: c.progs["frag_ingress_"+kind+variant], Egress: c.progs["frag_egress_"+kind+variant]}
}

// Read returns the counts since load.
func (c *Counter) Read() (map[Key]uint64, error) {
	return nbpf.SumPerCPU[Key](c.Map("frags"))
}

// Full returns how many packets found the counter map full (each one's
// count is lost).
func (c *Counter) Full() (uint64, error) {
	return nbpf.SumArraySlot(c.Map("full"), 0)
}

// Forget deletes the counters of an interface that is gone.
func (c *Counter) Forget(keys []Key) {
	m := c.Map("frags")
	for _, k := range keys {
		_ = m.Delete(k)
	}
}

// RunStats sums the kernel's run-time accounting (BPF_ENABLE_STATS must be
// on) over the interface programs: total run time in ns and run count.
func (c *Counter) RunStats() (uint64, uint64) {
	var ns, n uint64
	for _, p := range c.progs {
		if st, err := p.Stats(); err == nil {
			ns += uint64(st.Runtime.Nanoseconds())
			n += st.RunCount
		}
	}
	return ns, n
}
