// Package tcpconnect loads netsonde's TCP connection outcome counter:
// BPF programs on sock:inet_sock_set_state (active opens, closes) and on
// tcp:tcp_send_reset / tcp:tcp_receive_reset.
package tcpconnect

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	nbpf "github.com/netsonde/netsonde/bpf"
	"github.com/netsonde/netsonde/bpf/loader"
)

// Stats is one network namespace's counters, as the kernel keeps them.
type Stats = bpfNsStats

// Logical programs, as reported in netsonde_bpf_program_attached.
const (
	ProgramSetState     = "inet_sock_set_state"
	ProgramSendReset    = "tcp_send_reset"
	ProgramReceiveReset = "tcp_receive_reset"
	ProgramErrorReport  = "inet_sk_error_report"
)

// Bucket upper bounds in the kernel's order (keep in step with
// tcpconnect.c): connect duration in seconds, smoothed RTT in seconds.
var (
	DurationEdges = []float64{0.001, 0.01, 0.1, 1, 3, 10}
	SRTTEdges     = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1}
)

// OverflowNetns is the key counts go under when the map has no room for
// another namespace (MaxNamespaces of them).
const (
	OverflowNetns = 0
	MaxNamespaces = 1024
)

// Options for Load.
type Options struct {
	// Hooks are tried in order; empty means tp_btf, then raw_tp. These
	// tracepoints need no tracefs either way, so there is no classic rung.
	Hooks []string
	// BTF is the kernel BTF shared by the objects loaded at start-up.
	BTF *loader.KernelBTF
	// MapSizes: see loader.Options (tests).
	MapSizes map[string]uint32
	// OnlyNetns, if set, restricts counting to these network namespaces
	// (tests, which must not count the machine's other connects).
	OnlyNetns []uint64
}

// Probe is the loaded and attached counter.
type Probe struct {
	*loader.Object
	// maps and vars are the object's, by bpf2go's names (loader.New).
	maps bpfMaps
	vars bpfVariables
}

// Load loads and attaches the four programs, each by the first hook that
// works. All must attach: without the state hook nothing is counted, and
// without the error report an ICMP-failed connect would pass for a
// timeout on kernels that set the error after the state change.
func Load(opts Options) (*Probe, error) {
	hooks := opts.Hooks
	if len(hooks) == 0 {
		hooks = []string{loader.HookTPBTF, loader.HookRawTP}
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	p := &Probe{}
	obj, err := loader.New(spec, loader.Options{BTF: opts.BTF, MapSizes: opts.MapSizes, OnlyNetns: opts.OnlyNetns},
		&p.maps, &p.vars)
	if err != nil {
		return nil, err
	}
	p.Object = obj
	// The overflow slot exists before any program runs, so a full map
	// still counts (under OverflowNetns).
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		obj.Close()
		return nil, fmt.Errorf("possible CPUs: %w", err)
	}
	if err := p.maps.Stats.Put(uint64(OverflowNetns), make([]Stats, cpus)); err != nil {
		obj.Close()
		return nil, fmt.Errorf("create the overflow slot: %w", err)
	}
	progs := []struct{ name, btf, raw string }{
		{ProgramSetState, bpfProgSetStateBtf, bpfProgSetStateRaw},
		{ProgramSendReset, bpfProgSendResetBtf, bpfProgSendResetRaw},
		{ProgramReceiveReset, bpfProgReceiveResetBtf, bpfProgReceiveResetRaw},
		{ProgramErrorReport, bpfProgErrorReportBtf, bpfProgErrorReportRaw},
	}
	var errs []error
	for _, prog := range progs {
		var rungs []loader.Rung
		for _, h := range hooks {
			switch h {
			case loader.HookTPBTF:
				rungs = append(rungs, loader.Rung{Hook: h, Program: prog.btf, Target: prog.name})
			case loader.HookRawTP:
				rungs = append(rungs, loader.Rung{Hook: h, Program: prog.raw, Target: prog.name})
			default:
				obj.Close()
				return nil, fmt.Errorf("unknown hook %q", h)
			}
		}
		errs = append(errs, obj.AttachFirst(prog.name, rungs))
	}
	if err := errors.Join(errs...); err != nil {
		obj.Close()
		return nil, err
	}
	return p, nil
}

// Full returns, by map (as netsonde_bpf_map_full_total names it), how
// many events found it full: tcpconnect_stats, events counted in the
// overflow slot; tcpconnect_inflight, connects whose outcome was lost.
func (p *Probe) Full() (map[string]uint64, error) {
	return nbpf.SumArraySlots(p.maps.Full, "tcpconnect_stats", "tcpconnect_inflight")
}

// Read returns each namespace's counters (by cookie), summed over CPUs.
func (p *Probe) Read() (map[uint64]Stats, error) {
	m := p.maps.Stats
	out := map[uint64]Stats{}
	var k uint64
	var per []Stats
	it := m.Iterate()
	for it.Next(&k, &per) {
		var s Stats
		for _, v := range per {
			Add(&s, &v)
		}
		out[k] = s
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", m, err)
	}
	return out, nil
}

// Add adds v's counts to to's.
func Add(to, v *Stats) {
	for i := range to.Connects {
		to.Connects[i] += v.Connects[i]
	}
	for i := range to.DurBuckets {
		to.DurBuckets[i] += v.DurBuckets[i]
	}
	to.DurSumNs += v.DurSumNs
	for i := range to.Resets {
		to.Resets[i] += v.Resets[i]
	}
	for i := range to.SrttBuckets {
		to.SrttBuckets[i] += v.SrttBuckets[i]
	}
	to.SrttSumUs += v.SrttSumUs
}

// InFlight counts the connections the kernel map holds in SYN_SENT now,
// by network namespace. It walks a map bounded at 16,384 entries, in
// batches.
func (p *Probe) InFlight() (map[uint64]int, error) {
	m := p.maps.Inflight
	keys := make([]uint64, 256)
	vals := make([]Inflight, 256)
	var cursor ebpf.MapBatchCursor
	out := map[uint64]int{}
	for {
		got, err := m.BatchLookup(&cursor, keys, vals, nil)
		for _, v := range vals[:got] {
			out[v.Netns]++
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("batch lookup %s: %w", m, err)
		}
	}
}

// Forget deletes the counters of namespaces that are gone.
func (p *Probe) Forget(netns []uint64) {
	m := p.maps.Stats
	for _, k := range netns {
		_ = m.Delete(k)
	}
}

// Inflight is one connection in SYN_SENT.
type Inflight = bpfInflightConn
