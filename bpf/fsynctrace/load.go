// Package fsynctrace loads netsonde's fsync tracer: BPF programs that time
// the fsyncs of chosen processes in the kernel and bucket them there.
package fsynctrace

import (
	"errors"
	"fmt"

	nbpf "github.com/netsonde/netsonde/bpf"
	"github.com/netsonde/netsonde/bpf/loader"
)

// Sources of fsync events.
const (
	// SourceExt4 uses ext4's sync tracepoints: only ext4 fsyncs, no cost
	// to any other syscall.
	SourceExt4 = "ext4"
	// SourceSyscalls uses the fsync/fdatasync syscall tracepoints: any
	// filesystem, but enabling them slows every syscall on the node.
	SourceSyscalls = "syscalls"
)

// NumBounds is how many histogram bounds the kernel side takes.
const NumBounds = 18

// HistKey and SumKey are the kernel's keys.
type (
	HistKey = bpfHistKey
	SumKey  = bpfSumKey
)

// Options for Load.
type Options struct {
	Source string
	// Comms are the process names to trace (at most 16, each cut to 15
	// bytes as the kernel does).
	Comms []string
	// Bounds are the histogram bounds in ns, ascending.
	Bounds [NumBounds]uint64
	// Hooks for the ext4 source, tried in order; empty: tp_btf, raw_tp,
	// tracepoint.
	Hooks []string
	// TracefsRoot: see loader.Options.
	TracefsRoot string
	// BTF is the kernel BTF shared by the objects loaded at start-up.
	BTF *loader.KernelBTF
	// MapSizes: see loader.Options (tests).
	MapSizes map[string]uint32
}

// Probe is the loaded and attached tracer.
type Probe struct {
	*loader.Object
	// maps and vars are the object's, by bpf2go's names (loader.New).
	maps bpfMaps
	vars bpfVariables
}

// Load attaches the tracer.
func Load(opts Options) (*Probe, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	var specs bpfVariableSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("embedded object: %w", err)
	}
	if err := specs.Bounds.Set(opts.Bounds); err != nil {
		return nil, fmt.Errorf("set bounds: %w", err)
	}
	p := &Probe{}
	obj, err := loader.New(spec, loader.Options{TracefsRoot: opts.TracefsRoot, BTF: opts.BTF, MapSizes: opts.MapSizes},
		&p.maps, &p.vars)
	if err != nil {
		return nil, err
	}
	p.Object = obj
	for _, c := range opts.Comms {
		var k bpfCommKey
		for i := 0; i < len(c) && i < 15; i++ {
			k.Comm[i] = int8(c[i])
		}
		if err := p.maps.Comms.Put(k, uint8(1)); err != nil {
			obj.Close()
			return nil, fmt.Errorf("set comm %q: %w", c, err)
		}
	}
	ladders, err := rungs(opts)
	if err != nil {
		obj.Close()
		return nil, err
	}
	var errs []error
	for _, name := range loader.Names(ladders) {
		errs = append(errs, obj.AttachFirst(name, ladders[name]))
	}
	if err := errors.Join(errs...); err != nil {
		obj.Close()
		return nil, err
	}
	return p, nil
}

func rungs(opts Options) (map[string][]loader.Rung, error) {
	switch opts.Source {
	case SourceSyscalls:
		out := map[string][]loader.Rung{}
		for _, ev := range []struct{ name, prog string }{
			{"sys_enter_fsync", bpfProgSysFsyncEnter}, {"sys_enter_fdatasync", bpfProgSysFdatasyncEnter},
			{"sys_exit_fsync", bpfProgSysFsyncExit}, {"sys_exit_fdatasync", bpfProgSysFdatasyncExit},
		} {
			out[ev.name] = []loader.Rung{{Hook: loader.HookTracepoint, Program: ev.prog, Target: "syscalls:" + ev.name}}
		}
		return out, nil
	case SourceExt4, "":
		hooks := opts.Hooks
		if len(hooks) == 0 {
			hooks = []string{loader.HookTPBTF, loader.HookRawTP, loader.HookTracepoint}
		}
		out := map[string][]loader.Rung{}
		for _, ev := range []struct{ name, btf, raw, tp string }{
			{"ext4_sync_file_enter", bpfProgExt4SyncEnterBtf, bpfProgExt4SyncEnterRaw, bpfProgExt4SyncEnterTp},
			{"ext4_sync_file_exit", bpfProgExt4SyncExitBtf, bpfProgExt4SyncExitRaw, bpfProgExt4SyncExitTp},
		} {
			for _, h := range hooks {
				r := loader.Rung{Hook: h, Target: ev.name}
				switch h {
				case loader.HookTPBTF:
					r.Program = ev.btf
				case loader.HookRawTP:
					r.Program = ev.raw
				case loader.HookTracepoint:
					r.Program, r.Target = ev.tp, "ext4:"+ev.name
				default:
					return nil, fmt.Errorf("unknown hook %q", h)
				}
				out[ev.name] = append(out[ev.name], r)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unknown fsync source %q", opts.Source)
	}
}

// Full returns, by map (as netsonde_bpf_map_full_total names it), how
// many events found it full: fsynctrace_starts, syncs not timed;
// fsynctrace_hist and fsynctrace_sums, timed syncs not counted there.
func (p *Probe) Full() (map[string]uint64, error) {
	return nbpf.SumArraySlots(p.maps.Full, "fsynctrace_starts", "fsynctrace_hist", "fsynctrace_sums")
}

// Read returns the bucket counts and duration sums (ns) counted so far.
func (p *Probe) Read() (map[HistKey]uint64, map[SumKey]uint64, error) {
	h, err := nbpf.SumPerCPU[HistKey](p.maps.Hist)
	if err != nil {
		return nil, nil, err
	}
	s, err := nbpf.SumPerCPU[SumKey](p.maps.Sums)
	if err != nil {
		return nil, nil, err
	}
	return h, s, nil
}
