// Package drops loads and attaches netsonde's packet-drop counter, a BPF
// program on the kernel's kfree_skb tracepoint, and reads its counts.
package drops

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	nbpf "github.com/netsonde/netsonde/bpf"
	"github.com/netsonde/netsonde/bpf/loader"
)

// Program is the logical program's name in netsonde_bpf_program_attached.
const Program = "kfree_skb"

// Hooks, best first.
var Hooks = []string{loader.HookTPBTF, loader.HookRawTP, loader.HookTracepoint}

// Options choose how to attach.
type Options struct {
	// Hooks are tried in order; empty means Hooks.
	Hooks []string
	// MapSize overrides the number of keys the drops map holds.
	MapSize uint32
	// TracefsRoot is where the classic tracepoint is read; empty: the
	// host's tracefs or a private mount.
	TracefsRoot string
}

// Key is one counter's label set, as the kernel keyed it.
type Key = bpfDropKey

// Counts is what the kernel has counted since the program was loaded.
type Counts struct {
	ByKey map[Key]uint64
	// Overflow counts drops, by reason, that found the main map full.
	Overflow map[uint32]uint64
	// Lost counts drops that found even the overflow map full.
	Lost uint64
}

// Probe is the loaded and attached program. Close detaches it and frees
// its maps.
type Probe struct {
	*loader.Object
}

// Load loads the program and attaches it by the first hook that works.
func Load(opts Options) (*Probe, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	if opts.MapSize > 0 {
		spec.Maps["drops"].MaxEntries = opts.MapSize
	}
	obj, err := loader.New(spec, loader.Options{TracefsRoot: opts.TracefsRoot})
	if err != nil {
		return nil, err
	}
	hooks := opts.Hooks
	if len(hooks) == 0 {
		hooks = Hooks
	}
	var rungs []loader.Rung
	for _, h := range hooks {
		switch h {
		case loader.HookTPBTF:
			rungs = append(rungs, loader.Rung{Hook: h, Program: "kfree_skb_btf", Target: "kfree_skb"})
		case loader.HookRawTP:
			rungs = append(rungs, loader.Rung{Hook: h, Program: "kfree_skb_raw", Target: "kfree_skb"})
		case loader.HookTracepoint:
			rungs = append(rungs, loader.Rung{Hook: h, Program: "kfree_skb_tp", Target: "skb:kfree_skb",
				// 6.11 inserted rx_sk before protocol and reason: 24/28 on
				// 6.1, 32/36 on 6.12+. The running kernel's format says.
				Prepare: func(ev *loader.Event) error {
					return obj.SetLayout(ev, loader.Field{Name: "skbaddr", Size: 8, Variable: "tp_off_skbaddr"},
						loader.Field{Name: "protocol", Size: 2, Variable: "tp_off_protocol"},
						loader.Field{Name: "reason", Size: 4, Variable: "tp_off_reason"})
				}})
		default:
			obj.Close()
			return nil, fmt.Errorf("unknown hook %q", h)
		}
	}
	if err := obj.AttachFirst(Program, rungs); err != nil {
		obj.Close()
		return nil, err
	}
	return &Probe{obj}, nil
}

// Hook is the hook the program is attached by, or loader.HookNone.
func (p *Probe) Hook() string { return p.Hooks()[Program] }

// Read returns the kernel's counts.
func (p *Probe) Read() (Counts, error) {
	byKey, err := nbpf.SumPerCPU[Key](p.Map("drops"))
	if err != nil {
		return Counts{}, err
	}
	over, err := nbpf.SumPerCPU[uint32](p.Map("overflow"))
	if err != nil {
		return Counts{}, err
	}
	lost, err := nbpf.SumArraySlot(p.Map("lost"), 0)
	if err != nil {
		return Counts{}, err
	}
	return Counts{ByKey: byKey, Overflow: over, Lost: lost}, nil
}

// Forget deletes counters, for label sets that are gone for good.
func (p *Probe) Forget(keys []Key) {
	m := p.Map("drops")
	for _, k := range keys {
		_ = m.Delete(k)
	}
}

// Program returns the attached program (for its run statistics), or nil.
func (p *Probe) Program() *ebpf.Program { return p.Active(Program) }

// LoadEmpty attaches an empty program to tp_btf/kfree_skb, for benchmarks
// that need the hook's own cost as a baseline. Close it like a Probe.
func LoadEmpty() (*ebpf.Program, link.Link, error) {
	var objs emptyObjects
	if err := loadEmptyObjects(&objs, nil); err != nil {
		return nil, nil, fmt.Errorf("load empty program: %w", err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: objs.KfreeSkbEmpty, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		objs.Close()
		return nil, nil, fmt.Errorf("attach empty program: %w", err)
	}
	return objs.KfreeSkbEmpty, l, nil
}
