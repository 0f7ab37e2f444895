// Package loader is the one way netsonde loads an eBPF object and attaches
// its programs: it lifts the memlock limit once, creates the object's maps
// once, loads each program against those maps, attaches it by the best hook
// the running kernel allows, and records which hook won (or why none did),
// so that netsonde_bpf_program_attached says what is attached now.
//
// The hook ladder for a kernel event, best first: tp_btf (typed, cheapest,
// no tracefs), raw_tp (needs no tracefs either), fentry, and the classic
// tracepoint, whose id and record layout come from tracefs (mounted
// privately when the node has none; see ReadEvent). Interfaces take TCX,
// or a clsact qdisc with a cls_bpf filter below 6.6 (tc.go).
package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Hooks, as reported in the hook label of netsonde_bpf_program_attached.
const (
	HookTPBTF      = "tp_btf"
	HookRawTP      = "raw_tp"
	HookFentry     = "fentry"
	HookTracepoint = "tracepoint"
	HookTCX        = "tcx"
	HookTC         = "tc"
	// HookCgroupSkb is a cgroup_skb program on a cgroup (the dns
	// collector's, on the cgroup v2 root: every socket of the node).
	HookCgroupSkb = "cgroup_skb"
	// HookNone is reported for a program that is not attached.
	HookNone = "none"
)

// ErrNoBTF says the kernel has no BTF: every netsonde program reads kernel
// structures through CO-RE relocations, which need it.
var ErrNoBTF = errors.New("the kernel has no BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF)")

// kernelBTFPath is where the running kernel publishes its BTF (5.4+).
const kernelBTFPath = "/sys/kernel/btf/vmlinux"

// removeMemlock raises RLIMIT_MEMLOCK on kernels before 5.11, which charge
// BPF memory to it (it probes first and does nothing on newer kernels).
var removeMemlock = sync.OnceValue(rlimit.RemoveMemlock)

// KernelBTF shares the kernel's parsed BTF among the objects the agent
// loads at start-up: the BPF collectors start concurrently, and each
// parsing vmlinux on its own multiplied the start-up peak by their number.
// The agent makes one, hands it to every collector through Deps, and
// releases it once they have started: only loading needs it, and it is the
// largest thing the agent ever holds. A nil KernelBTF gives each load a
// cache of its own.
type KernelBTF struct {
	mu sync.Mutex
	c  *btf.Cache
}

func (k *KernelBTF) cache() *btf.Cache {
	if k == nil {
		return btf.NewCache()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c == nil {
		k.c = btf.NewCache()
	}
	return k.c
}

// Release drops the parsed BTF; a later load parses it again.
func (k *KernelBTF) Release() {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.c = nil
	k.mu.Unlock()
}

// Options configure an Object.
type Options struct {
	// TracefsRoot, if set, is where classic tracepoints' ids and formats
	// are read; empty means the host's tracefs, or a private mount.
	TracefsRoot string
	// BTF is the kernel BTF shared with other objects (nil: parse it for
	// this object alone).
	BTF *KernelBTF
	// MapSizes overrides maps' max_entries by name: tests make a map
	// small to overflow it with a known number of events.
	MapSizes map[string]uint32
	// OnlyNetns, if set, switches on the object's namespace filter
	// (NETSONDE_ONLY_NETNS in netsonde.h) for these network namespaces:
	// tests count only the namespaces they made.
	OnlyNetns []uint64
}

// Object is one eBPF object: its maps, created once and shared by every
// program loaded from it, and the programs' attachments.
type Object struct {
	spec *ebpf.CollectionSpec
	maps *ebpf.Collection
	opts Options

	mu      sync.Mutex
	progs   []*ebpf.Program
	closers []io.Closer
	hooks   map[string]string
	tried   map[string][]string
	active  map[string]*ebpf.Program
}

// New creates the object's maps. Constants (volatile const) must be set in
// spec before; variables (.data, .bss) can be set later. typed are
// bpf2go's structs of maps and variables to fill (Assign).
func New(spec *ebpf.CollectionSpec, opts Options, typed ...any) (*Object, error) {
	if _, err := os.Stat(kernelBTFPath); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoBTF, err)
	}
	if err := removeMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	if len(opts.MapSizes) > 0 || len(opts.OnlyNetns) > 0 {
		// The programs are loaded from spec later, against these maps:
		// their specs must agree.
		spec = spec.Copy()
		for name, n := range opts.MapSizes {
			m, ok := spec.Maps[name]
			if !ok {
				return nil, fmt.Errorf("size of map %q: the object has no such map", name)
			}
			m.MaxEntries = n
		}
		if len(opts.OnlyNetns) > 0 {
			v, ok := spec.Variables["netns_filter"]
			if !ok {
				return nil, errors.New("namespace filter: the object has none (NETSONDE_ONLY_NETNS)")
			}
			if err := v.Set(uint8(1)); err != nil {
				return nil, fmt.Errorf("namespace filter: %w", err)
			}
		}
	}
	mapsOnly := spec.Copy()
	mapsOnly.Programs = map[string]*ebpf.ProgramSpec{}
	maps, err := ebpf.NewCollectionWithOptions(mapsOnly, ebpf.CollectionOptions{Cache: opts.BTF.cache()})
	if err != nil {
		return nil, fmt.Errorf("create maps: %w", err)
	}
	for _, ns := range opts.OnlyNetns {
		if err := maps.Maps["only_netns"].Put(ns, uint8(1)); err != nil {
			maps.Close()
			return nil, fmt.Errorf("namespace filter: %w", err)
		}
	}
	o := &Object{spec: spec, maps: maps, opts: opts,
		hooks: map[string]string{}, tried: map[string][]string{}, active: map[string]*ebpf.Program{}}
	if err := o.Assign(typed...); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

// ByteOrder is the byte order of the object's ELF, in which its programs
// store multi-byte values in maps and ring buffers: what decodes a raw
// sample takes, rather than assuming the host's (bpf2go embeds the object
// matching the build's architecture, bpfel or bpfeb).
func (o *Object) ByteOrder() binary.ByteOrder { return o.spec.ByteOrder }

// Load loads programs by their names in the spec, against the object's maps.
// A program that the kernel rejects fails the call; programs of other
// rungs are not loaded, so one hook's absence cannot break another's.
func (o *Object) Load(names ...string) (map[string]*ebpf.Program, error) {
	cs := o.spec.Copy()
	keep := map[string]*ebpf.ProgramSpec{}
	for _, n := range names {
		ps, ok := cs.Programs[n]
		if !ok {
			return nil, fmt.Errorf("no program %q in the object", n)
		}
		keep[n] = ps
	}
	cs.Programs = keep
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{MapReplacements: o.maps.Maps, Cache: o.opts.BTF.cache()})
	if err != nil {
		return nil, err
	}
	// The collection's maps are duplicates of ours; the programs hold
	// their own references.
	for _, m := range coll.Maps {
		m.Close()
	}
	o.mu.Lock()
	for _, p := range coll.Programs {
		o.progs = append(o.progs, p)
	}
	o.mu.Unlock()
	return coll.Programs, nil
}

// Rung is one way to attach a logical program.
type Rung struct {
	Hook string
	// Program is the program's name in the object for this hook.
	Program string
	// Target is the kernel event: the tracepoint's name for tp_btf and
	// raw_tp ("kfree_skb"), "group:name" for a classic tracepoint, the
	// function for fentry.
	Target string
	// Prepare, if set, runs before the load; for a classic tracepoint it
	// gets the event (its record layout) to set the object's variables.
	// An error skips the rung.
	Prepare func(ev *Event) error
	// Attach, if set, attaches the loaded program (hooks whose target is
	// more than a name: a cgroup, an interface); the closer detaches it.
	Attach func(prog *ebpf.Program) (io.Closer, error)
}

// AttachFirst attaches the logical program name by the first rung that
// loads and attaches, and records the hook. It returns the error of every
// rung when none works; the program is then reported not attached.
func (o *Object) AttachFirst(name string, rungs []Rung) error {
	var errs []error
	o.mu.Lock()
	o.hooks[name] = ""
	o.tried[name] = nil
	o.mu.Unlock()
	for _, r := range rungs {
		c, prog, err := o.attach(r)
		o.mu.Lock()
		if err != nil {
			o.tried[name] = append(o.tried[name], fmt.Sprintf("%s: %v", r.Hook, err))
			o.mu.Unlock()
			errs = append(errs, fmt.Errorf("%s %s: %w", r.Hook, r.Target, err))
			continue
		}
		o.tried[name] = append(o.tried[name], r.Hook+": ok")
		o.hooks[name] = r.Hook
		o.active[name] = prog
		o.closers = append(o.closers, c)
		o.mu.Unlock()
		return nil
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no hook to try"))
	}
	return fmt.Errorf("attach %s: %w", name, errors.Join(errs...))
}

func (o *Object) attach(r Rung) (io.Closer, *ebpf.Program, error) {
	var ev Event
	if r.Hook == HookTracepoint {
		group, event, ok := strings.Cut(r.Target, ":")
		if !ok {
			return nil, nil, fmt.Errorf("tracepoint %q is not group:name", r.Target)
		}
		var err error
		if ev, err = ReadEvent(o.opts.TracefsRoot, group, event); err != nil {
			return nil, nil, err
		}
	}
	if r.Prepare != nil {
		if err := r.Prepare(&ev); err != nil {
			return nil, nil, err
		}
	}
	progs, err := o.Load(r.Program)
	if err != nil {
		return nil, nil, fmt.Errorf("load: %w", err)
	}
	prog := progs[r.Program]
	c, err := attachProgram(r, prog, ev)
	if err != nil {
		o.unload(prog)
		return nil, nil, err
	}
	return c, prog, nil
}

// unload closes a program that did not attach.
func (o *Object) unload(prog *ebpf.Program) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, p := range o.progs {
		if p == prog {
			o.progs = append(o.progs[:i], o.progs[i+1:]...)
			break
		}
	}
	prog.Close()
}

func attachProgram(r Rung, prog *ebpf.Program, ev Event) (io.Closer, error) {
	if r.Attach != nil {
		return r.Attach(prog)
	}
	switch r.Hook {
	case HookTPBTF:
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	case HookFentry:
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
	case HookRawTP:
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: r.Target, Program: prog})
	case HookTracepoint:
		return attachTracepoint(prog, ev.ID)
	default:
		return nil, fmt.Errorf("unknown hook %q", r.Hook)
	}
}

// Hooks reports, per logical program given to AttachFirst, the hook it is
// attached by, or HookNone.
func (o *Object) Hooks() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]string, len(o.hooks))
	for n, h := range o.hooks {
		if h == "" {
			h = HookNone
		}
		out[n] = h
	}
	return out
}

// Tried says, per logical program, each rung tried and how it went, for
// the log line a user reads when a hook is missing.
func (o *Object) Tried() map[string][]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string][]string, len(o.tried))
	for n, t := range o.tried {
		out[n] = append([]string(nil), t...)
	}
	return out
}

// Active returns the program attached for a logical program, or nil.
func (o *Object) Active(name string) *ebpf.Program {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.active[name]
}

// Programs lists the loaded programs (for their run-time statistics).
func (o *Object) Programs() []*ebpf.Program {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*ebpf.Program(nil), o.progs...)
}

// AddCloser makes Close release c too (per-interface attachments).
func (o *Object) AddCloser(c io.Closer) {
	o.mu.Lock()
	o.closers = append(o.closers, c)
	o.mu.Unlock()
}

// Close detaches every program and frees programs and maps.
func (o *Object) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	for i := len(o.closers) - 1; i >= 0; i-- {
		if err := o.closers[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	o.closers = nil
	for _, p := range o.progs {
		p.Close()
	}
	o.progs = nil
	o.maps.Close()
	for n := range o.hooks {
		o.hooks[n] = ""
	}
	clear(o.active)
	return errors.Join(errs...)
}

// Names returns the keys of m sorted, for stable logs.
func Names[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Ladder orders a program's rungs for AttachFirst: rungs are given best
// first, and hooks, when not empty, picks and orders them by hook (a
// forced hook, from a flag). A hook with no rung is an error.
func Ladder(hooks []string, rungs ...Rung) ([]Rung, error) {
	if len(hooks) == 0 {
		return rungs, nil
	}
	var out []Rung
	for _, h := range hooks {
		n := len(out)
		for _, r := range rungs {
			if r.Hook == h {
				out = append(out, r)
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("unknown hook %q", h)
		}
	}
	return out, nil
}
