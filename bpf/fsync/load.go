// Package fsync loads netsonde's fsync tracer: BPF programs that time the
// fsyncs of chosen processes in the kernel and bucket them there.
package fsync

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	nbpf "github.com/netsonde/netsonde/bpf"
)

// Hooks, best first.
const (
	// HookExt4 uses ext4's sync tracepoints: only ext4 fsyncs, no cost to
	// any other syscall.
	HookExt4 = "ext4"
	// HookSyscalls uses the fsync/fdatasync syscall tracepoints: any
	// filesystem, but enabling them slows every syscall on the node.
	HookSyscalls = "syscalls"
)

var hookPrograms = map[string][][3]string{
	HookExt4: {
		{"ext4_sync_enter", "ext4", "ext4_sync_file_enter"},
		{"ext4_sync_exit", "ext4", "ext4_sync_file_exit"},
	},
	HookSyscalls: {
		{"sys_fsync_enter", "syscalls", "sys_enter_fsync"},
		{"sys_fdatasync_enter", "syscalls", "sys_enter_fdatasync"},
		{"sys_fsync_exit", "syscalls", "sys_exit_fsync"},
		{"sys_fdatasync_exit", "syscalls", "sys_exit_fdatasync"},
	},
}

// NumBounds is how many histogram bounds the kernel side takes.
const NumBounds = 18

// HistKey and SumKey are the kernel's keys.
type (
	HistKey = bpfHistKey
	SumKey  = bpfSumKey
)

// Tracer is the loaded and attached tracer.
type Tracer struct {
	coll  *ebpf.Collection
	links []link.Link
	Hook  string
	// Tried says, per hook tried, "ok" or why not.
	Tried []string
}

// Load attaches the tracer with the first hook of hooks that works, for
// processes named comms (at most 16, each cut to 15 bytes as the kernel
// does), bucketing durations by bounds (ns, ascending).
func Load(hooks []string, comms []string, bounds [NumBounds]uint64) (*Tracer, error) {
	t := &Tracer{}
	var errs []error
	for _, h := range hooks {
		err := t.load(h, comms, bounds)
		if err == nil {
			t.Hook = h
			t.Tried = append(t.Tried, h+": ok")
			return t, nil
		}
		t.Tried = append(t.Tried, fmt.Sprintf("%s: %v", h, err))
		errs = append(errs, fmt.Errorf("%s: %w", h, err))
	}
	return nil, errors.Join(errs...)
}

func (t *Tracer) load(hook string, comms []string, bounds [NumBounds]uint64) error {
	progs, ok := hookPrograms[hook]
	if !ok {
		return fmt.Errorf("unknown hook %q", hook)
	}
	spec, err := loadBpf()
	if err != nil {
		return fmt.Errorf("parse embedded object: %w", err)
	}
	keep := map[string]bool{}
	for _, p := range progs {
		keep[p[0]] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}
	if err := spec.Variables["bounds"].Set(bounds); err != nil {
		return fmt.Errorf("set bounds: %w", err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	for _, c := range comms {
		var k bpfCommKey
		for i := 0; i < len(c) && i < 15; i++ {
			k.Comm[i] = int8(c[i])
		}
		if err := coll.Maps["comms"].Put(k, uint8(1)); err != nil {
			coll.Close()
			return fmt.Errorf("set comm %q: %w", c, err)
		}
	}
	var links []link.Link
	for _, p := range progs {
		l, err := link.Tracepoint(p[1], p[2], coll.Programs[p[0]], nil)
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			coll.Close()
			return fmt.Errorf("attach %s:%s: %w", p[1], p[2], err)
		}
		links = append(links, l)
	}
	t.coll, t.links = coll, links
	return nil
}

// Programs reports every program of every hook and whether it is attached.
func (t *Tracer) Programs() map[string]bool {
	out := map[string]bool{}
	for hook, progs := range hookPrograms {
		for _, p := range progs {
			out[p[0]] = hook == t.Hook
		}
	}
	return out
}

// Read returns the bucket counts and duration sums (ns) counted so far.
func (t *Tracer) Read() (map[HistKey]uint64, map[SumKey]uint64, error) {
	h, err := nbpf.SumPerCPU[HistKey](t.coll.Maps["hist"])
	if err != nil {
		return nil, nil, err
	}
	s, err := nbpf.SumPerCPU[SumKey](t.coll.Maps["sums"])
	if err != nil {
		return nil, nil, err
	}
	return h, s, nil
}

// Close detaches and frees everything.
func (t *Tracer) Close() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.coll.Close()
	return errors.Join(errs...)
}
