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

// Counter is the loaded and attached counter.
type Counter struct {
	*loader.Object
}

// Load loads and attaches both programs, each by the first hook that works.
func Load(opts Options) (*Counter, error) {
	if opts.Group == "" {
		opts.Group = "tcp"
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	obj, err := loader.New(spec, loader.Options{TracefsRoot: opts.TracefsRoot, BTF: opts.BTF,
		MapSizes: opts.MapSizes, OnlyNetns: opts.OnlyNetns})
	if err != nil {
		return nil, err
	}
	skb, err := loader.Ladder(opts.Hooks,
		// With err (6.13+) first: the verifier refuses it where the
		// tracepoint has two arguments.
		loader.Rung{Hook: loader.HookTPBTF, Program: "retransmit_skb_btf_err", Target: ProgramSkb},
		loader.Rung{Hook: loader.HookTPBTF, Program: "retransmit_skb_btf", Target: ProgramSkb},
		loader.Rung{Hook: loader.HookRawTP, Program: "retransmit_skb_raw", Target: ProgramSkb},
		loader.Rung{Hook: loader.HookTracepoint, Program: "retransmit_skb_tp", Target: opts.Group + ":" + ProgramSkb,
			Prepare: func(ev *loader.Event) error { return setErrOffset(obj, ev.Format) }})
	if err != nil {
		obj.Close()
		return nil, err
	}
	synack, err := loader.Ladder(opts.Hooks,
		loader.Rung{Hook: loader.HookTPBTF, Program: "retransmit_synack_btf", Target: ProgramSynack},
		loader.Rung{Hook: loader.HookRawTP, Program: "retransmit_synack_raw", Target: ProgramSynack},
		loader.Rung{Hook: loader.HookTracepoint, Program: "retransmit_synack_tp", Target: opts.Group + ":" + ProgramSynack})
	if err != nil {
		obj.Close()
		return nil, err
	}
	err = errors.Join(obj.AttachFirst(ProgramSkb, skb), obj.AttachFirst(ProgramSynack, synack))
	if err != nil {
		obj.Close()
		return nil, err
	}
	return &Counter{obj}, nil
}

// setErrOffset tells the classic program where err is (6.13+), or that
// there is none (0).
func setErrOffset(obj *loader.Object, format string) error {
	off, size, err := loader.FieldOffset(format, "err")
	switch {
	case errors.Is(err, loader.ErrNoField):
		off = 0
	case err != nil:
		return fmt.Errorf("tcp_retransmit_skb layout: %w", err)
	case size != 4:
		return fmt.Errorf("tcp_retransmit_skb layout: err is %d bytes", size)
	}
	return obj.Variable("tp_off_err").Set(uint32(off))
}

// Read returns the counts since load.
func (c *Counter) Read() (map[Key]uint64, error) {
	return nbpf.SumPerCPU[Key](c.Map("retrans"))
}

// Full returns how many retransmit events found the counter map full
// (each one's count is lost).
func (c *Counter) Full() (uint64, error) {
	return nbpf.SumArraySlot(c.Map("full"), 0)
}
