// Package drops loads and attaches netsonde's packet-drop counter, a BPF
// program on the kernel's kfree_skb tracepoint, and reads its counts.
package drops

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	nbpf "github.com/netsonde/netsonde/bpf"
)

// Attach forms, best first.
const (
	// ModeBTF is tp_btf/kfree_skb: BTF-typed raw tracepoint, cheapest.
	ModeBTF = "tp_btf"
	// ModeTracepoint is the classic skb:kfree_skb tracepoint.
	ModeTracepoint = "tracepoint"
)

// Program names as reported in netsonde_bpf_program_attached.
const (
	ProgramBTF        = "kfree_skb_btf"
	ProgramTracepoint = "kfree_skb_tp"
)

// Options choose how to attach.
type Options struct {
	// Modes are tried in order; empty means {ModeBTF, ModeTracepoint}.
	Modes []string
	// MapSize overrides the number of keys the drops map holds.
	MapSize uint32
	// TracepointFormat is the classic tracepoint's format file (for the
	// layout check); empty means tracefs under /sys/kernel/tracing.
	TracepointFormat string
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
	maps bpfMaps
	prog *ebpf.Program
	link link.Link
	// Mode is the attach form in use; Tried lists every form tried and why
	// each one that failed did.
	Mode  string
	Tried []string
}

// Load loads the program in the first form that works here and attaches it.
func Load(opts Options) (*Probe, error) {
	modes := opts.Modes
	if len(modes) == 0 {
		modes = []string{ModeBTF, ModeTracepoint}
	}
	var errs []error
	p := &Probe{}
	for _, mode := range modes {
		err := p.load(mode, opts)
		if err == nil {
			p.Mode = mode
			p.Tried = append(p.Tried, mode+": ok")
			return p, nil
		}
		p.Tried = append(p.Tried, fmt.Sprintf("%s: %v", mode, err))
		errs = append(errs, fmt.Errorf("%s: %w", mode, err))
	}
	return nil, errors.Join(errs...)
}

func (p *Probe) load(mode string, opts Options) error {
	spec, err := loadBpf()
	if err != nil {
		return fmt.Errorf("parse embedded object: %w", err)
	}
	if opts.MapSize > 0 {
		spec.Maps["drops"].MaxEntries = opts.MapSize
	}
	// Load only the program for this form: a tp_btf program fails to load
	// on a kernel without BTF and would take the other down with it.
	switch mode {
	case ModeBTF:
		delete(spec.Programs, ProgramTracepoint)
	case ModeTracepoint:
		if err := checkTracepointLayout(opts.TracepointFormat); err != nil {
			return err
		}
		delete(spec.Programs, ProgramBTF)
	default:
		return fmt.Errorf("unknown attach mode %q", mode)
	}
	var objs struct {
		bpfMaps
		Prog *ebpf.Program `ebpf:"kfree_skb_btf"`
	}
	if mode == ModeTracepoint {
		// The same struct, naming the other program.
		var tp struct {
			bpfMaps
			Prog *ebpf.Program `ebpf:"kfree_skb_tp"`
		}
		if err := spec.LoadAndAssign(&tp, nil); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		objs.bpfMaps, objs.Prog = tp.bpfMaps, tp.Prog
	} else if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	var l link.Link
	switch mode {
	case ModeBTF:
		l, err = link.AttachTracing(link.TracingOptions{Program: objs.Prog, AttachType: ebpf.AttachTraceRawTp})
	case ModeTracepoint:
		l, err = link.Tracepoint("skb", "kfree_skb", objs.Prog, nil)
	}
	if err != nil {
		objs.Prog.Close()
		objs.bpfMaps.Close()
		return fmt.Errorf("attach: %w", err)
	}
	p.maps, p.prog, p.link = objs.bpfMaps, objs.Prog, l
	return nil
}

// checkTracepointLayout makes sure the classic tracepoint's context is the
// one the program was compiled for (6.11+: rx_sk before protocol); reading
// another layout would count garbage.
func checkTracepointLayout(path string) error {
	if path == "" {
		path = "/sys/kernel/tracing/events/skb/kfree_skb/format"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read tracepoint format: %w", err)
	}
	for _, want := range []string{
		"field:void * skbaddr;\toffset:8;",
		"field:unsigned short protocol;\toffset:32;",
		"field:enum skb_drop_reason reason;\toffset:36;",
	} {
		if !strings.Contains(string(b), want) {
			return fmt.Errorf("skb:kfree_skb layout differs from the compiled one (no %q)", strings.ReplaceAll(want, "\t", " "))
		}
	}
	return nil
}

// Programs reports each program of the family and whether it is attached.
func (p *Probe) Programs() map[string]bool {
	return map[string]bool{
		ProgramBTF:        p.Mode == ModeBTF,
		ProgramTracepoint: p.Mode == ModeTracepoint,
	}
}

// Read returns the kernel's counts.
func (p *Probe) Read() (Counts, error) {
	byKey, err := nbpf.SumPerCPU[Key](p.maps.Drops)
	if err != nil {
		return Counts{}, err
	}
	over, err := nbpf.SumPerCPU[uint32](p.maps.Overflow)
	if err != nil {
		return Counts{}, err
	}
	lost, err := nbpf.SumArraySlot(p.maps.Lost, 0)
	if err != nil {
		return Counts{}, err
	}
	return Counts{ByKey: byKey, Overflow: over, Lost: lost}, nil
}

// Forget deletes counters, for label sets that are gone for good.
func (p *Probe) Forget(keys []Key) {
	for _, k := range keys {
		_ = p.maps.Drops.Delete(k)
	}
}

// Close detaches the program and releases the maps.
func (p *Probe) Close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
	}
	errs = append(errs, p.prog.Close(), p.maps.Close())
	return errors.Join(errs...)
}

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

// Program returns the attached program (for its run statistics).
func (p *Probe) Program() *ebpf.Program { return p.prog }
