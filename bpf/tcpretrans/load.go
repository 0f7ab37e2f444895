// Package tcpretrans loads netsonde's TCP retransmit counter: BPF programs
// on the tcp_retransmit_skb and tcp_retransmit_synack tracepoints.
package tcpretrans

import (
	"errors"
	"fmt"

	nbpf "github.com/netsonde/netsonde/bpf"
	"github.com/netsonde/netsonde/bpf/loader"
)

// Key is one counter's label set as the kernel keyed it.
type Key = bpfRetransKey

// Logical programs, as reported in netsonde_bpf_program_attached.
const (
	ProgramSkb    = "tcp_retransmit_skb"
	ProgramSynack = "tcp_retransmit_synack"
)

// Options for Load.
type Options struct {
	// Group is the classic tracepoints' group ("tcp"); tests name a
	// missing one, together with Hooks = {tracepoint}, to force a failure.
	Group string
	// Hooks are tried in order; empty means tp_btf, raw_tp, tracepoint.
	Hooks []string
	// TracefsRoot: see loader.Options.
	TracefsRoot string
	// BTF is the kernel BTF shared by the objects loaded at start-up.
	BTF *loader.KernelBTF
	// MapSizes: see loader.Options (tests).
	MapSizes map[string]uint32
	// OnlyNetns, if set, restricts counting to these network namespaces
	// (tests, which must not count the machine's other retransmits).
	OnlyNetns []uint64
}

// Probe is the loaded and attached counter.
type Probe struct {
	*loader.Object
	// maps and vars are the object's, by bpf2go's names (loader.New).
	maps bpfMaps
	vars bpfVariables
}

// Load loads and attaches both programs, each by the first hook that works.
func Load(opts Options) (*Probe, error) {
	if opts.Group == "" {
		opts.Group = "tcp"
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	p := &Probe{}
	obj, err := loader.New(spec, loader.Options{TracefsRoot: opts.TracefsRoot, BTF: opts.BTF,
		MapSizes: opts.MapSizes, OnlyNetns: opts.OnlyNetns}, &p.maps, &p.vars)
	if err != nil {
		return nil, err
	}
	p.Object = obj
	skb, err := loader.Ladder(opts.Hooks,
		// With err (6.13+) first: the verifier refuses it where the
		// tracepoint has two arguments.
		loader.Rung{Hook: loader.HookTPBTF, Program: bpfProgRetransmitSkbBtfErr, Target: ProgramSkb},
		loader.Rung{Hook: loader.HookTPBTF, Program: bpfProgRetransmitSkbBtf, Target: ProgramSkb},
		loader.Rung{Hook: loader.HookRawTP, Program: bpfProgRetransmitSkbRaw, Target: ProgramSkb},
		loader.Rung{Hook: loader.HookTracepoint, Program: bpfProgRetransmitSkbTp, Target: opts.Group + ":" + ProgramSkb,
			Prepare: func(ev *loader.Event) error { return p.setErrOffset(ev.Format) }})
	if err != nil {
		obj.Close()
		return nil, err
	}
	synack, err := loader.Ladder(opts.Hooks,
		loader.Rung{Hook: loader.HookTPBTF, Program: bpfProgRetransmitSynackBtf, Target: ProgramSynack},
		loader.Rung{Hook: loader.HookRawTP, Program: bpfProgRetransmitSynackRaw, Target: ProgramSynack},
		loader.Rung{Hook: loader.HookTracepoint, Program: bpfProgRetransmitSynackTp, Target: opts.Group + ":" + ProgramSynack})
	if err != nil {
		obj.Close()
		return nil, err
	}
	err = errors.Join(obj.AttachFirst(ProgramSkb, skb), obj.AttachFirst(ProgramSynack, synack))
	if err != nil {
		obj.Close()
		return nil, err
	}
	return p, nil
}

// setErrOffset tells the classic program where err is (6.13+), or that
// there is none (0).
func (p *Probe) setErrOffset(format string) error {
	off, size, err := loader.FieldOffset(format, "err")
	switch {
	case errors.Is(err, loader.ErrNoField):
		off = 0
	case err != nil:
		return fmt.Errorf("tcp_retransmit_skb layout: %w", err)
	case size != 4:
		return fmt.Errorf("tcp_retransmit_skb layout: err is %d bytes", size)
	}
	return p.vars.TpOffErr.Set(uint32(off))
}

// Read returns the counts since load.
func (p *Probe) Read() (map[Key]uint64, error) {
	return nbpf.SumPerCPU[Key](p.maps.Retrans)
}

// Full returns how many retransmit events found the counter map full
// (each one's count is lost).
func (p *Probe) Full() (uint64, error) {
	return nbpf.SumArraySlot(p.maps.Full, 0)
}
