// Package drops loads and attaches netsonde's packet-drop counter, a BPF
// program on the kernel's kfree_skb tracepoint, and reads its counts.
package drops

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	nbpf "github.com/netsonde/netsonde/bpf"
	"github.com/netsonde/netsonde/bpf/loader"
)

// Program is the logical program's name in netsonde_bpf_program_attached.
const Program = "kfree_skb"

// defaultMapSize is drops.c's MAX_KEYS: below it, the per-CPU slot table
// in front of the map is off, so that the map's size bounds the keys.
const defaultMapSize = 8192

// Options choose how to attach.
type Options struct {
	// Hooks are tried in order; empty means tp_btf, raw_tp, tracepoint.
	Hooks []string
	// MapSize overrides the number of keys the drops map holds.
	MapSize uint32
	// TracefsRoot is where the classic tracepoint is read; empty: the
	// host's tracefs or a private mount.
	TracefsRoot string
	// BTF is the kernel BTF shared by the objects loaded at start-up.
	BTF *loader.KernelBTF
	// MaxKeysPerInterface and MaxKeysPerNetns bound the keys one interface
	// and one network namespace hold in the drops map; a new key past
	// either is refused and its drop counted by reason alone (Refused).
	// 0: no bound. OwnNetns (the node's namespace, which holds every host
	// interface) is exempt from the namespace bound.
	MaxKeysPerInterface, MaxKeysPerNetns uint32
	OwnNetns                             uint64
	// OnlyNetns, if set, counts only drops in these network namespaces:
	// tests whose figures must be exact while others drop meanwhile.
	OnlyNetns []uint64
}

// The agent's default quotas: room for every (reason, protocol) an
// interface plausibly drops with (tens of reasons, a few protocols), and
// for a pod's few interfaces.
const (
	DefaultMaxKeysPerInterface = 64
	DefaultMaxKeysPerNetns     = 256
)

// quotaNetns is drops.c's QUOTA_NETNS: the ifindex of a namespace's own
// quota entry.
const quotaNetns = 0xffffffff

// ProtocolOther is the key's protocol for every EtherType drops.c does not
// know: they are folded into one key in the kernel.
const ProtocolOther = 0xffff

// Key is one counter's label set, as the kernel keyed it.
type Key = bpfDropKey

// Counts is what the kernel has counted since the program was loaded.
type Counts struct {
	ByKey map[Key]uint64
	// Overflow counts drops, by reason, that found the main map full.
	Overflow map[uint32]uint64
	// Refused counts drops, by reason, whose new key their interface's or
	// namespace's quota refused.
	Refused map[uint32]uint64
	// Lost counts drops that found even the overflow map full.
	Lost uint64
}

// Probe is the loaded and attached program. Close detaches it and frees
// its maps.
type Probe struct {
	*loader.Object
	// maps and vars are the object's, by bpf2go's names (loader.New).
	maps bpfMaps
	vars bpfVariables

	// slotBuf is reused by every Read: the slots map is read whole on
	// every scrape.
	slotKeys []uint32
	slotBuf  []bpfDropSlot
	// forgotten is, per slot and CPU, a forgotten key and its count when
	// it was forgotten: a slot keeps its key for good (drops.c), so a key
	// that comes back (an ifindex reused in the same namespace) counts
	// from zero again, and one that does not is not reported.
	forgotten map[slotRef]uint64
	// quotas: whether the kernel charges keys to interfaces and to
	// namespaces (then Forget credits them back).
	ifaceQuota, netnsQuota bool
	ownNetns               uint64
}

// slotRef is one CPU's copy of one slot, with the key it held.
type slotRef struct {
	index, cpu int
	key        Key
}

// Load loads the program and attaches it by the first hook that works.
func Load(opts Options) (*Probe, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	var specs bpfSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("embedded object: %w", err)
	}
	quotaMaps := []*ebpf.MapSpec{specs.QuotaAdded, specs.QuotaForgotten}
	if opts.MapSize > 0 {
		specs.Drops.MaxEntries = opts.MapSize
		// Room for one interface and one namespace entry per key.
		for _, m := range quotaMaps {
			m.MaxEntries = 2 * max(opts.MapSize, 64)
		}
	}
	if opts.MaxKeysPerInterface == 0 && opts.MaxKeysPerNetns == 0 {
		// No quota: the programs never touch them (constants), so they
		// need not take the kernel memory of a preallocated map.
		for _, m := range quotaMaps {
			m.MaxEntries = 1
		}
	}
	for v, val := range map[*ebpf.VariableSpec]any{specs.MaxKeysPerIface: opts.MaxKeysPerInterface,
		specs.MaxKeysPerNetns: opts.MaxKeysPerNetns, specs.OwnNetns: opts.OwnNetns} {
		if err := v.Set(val); err != nil {
			return nil, fmt.Errorf("%s: %w", v.Name, err)
		}
	}
	if opts.MapSize > 0 && opts.MapSize < defaultMapSize {
		if err := specs.SlotsOn.Set(uint32(0)); err != nil {
			return nil, fmt.Errorf("%s: %w", specs.SlotsOn.Name, err)
		}
		specs.Slots.MaxEntries = 1
	}
	p := &Probe{forgotten: map[slotRef]uint64{},
		ifaceQuota: opts.MaxKeysPerInterface > 0, netnsQuota: opts.MaxKeysPerNetns > 0, ownNetns: opts.OwnNetns}
	obj, err := loader.New(spec, loader.Options{TracefsRoot: opts.TracefsRoot, BTF: opts.BTF, OnlyNetns: opts.OnlyNetns},
		&p.maps, &p.vars)
	if err != nil {
		return nil, err
	}
	p.Object = obj
	rungs, err := loader.Ladder(opts.Hooks,
		loader.Rung{Hook: loader.HookTPBTF, Program: bpfProgKfreeSkbBtf, Target: "kfree_skb"},
		loader.Rung{Hook: loader.HookRawTP, Program: bpfProgKfreeSkbRaw, Target: "kfree_skb"},
		loader.Rung{Hook: loader.HookTracepoint, Program: bpfProgKfreeSkbTp, Target: "skb:kfree_skb",
			// 6.11 inserted rx_sk before protocol and reason: 24/28 on
			// 6.1, 32/36 on 6.12+. The running kernel's format says.
			Prepare: func(ev *loader.Event) error {
				return obj.SetLayout(ev, loader.Field{Name: "skbaddr", Size: 8, Variable: bpfVarTpOffSkbaddr},
					loader.Field{Name: "protocol", Size: 2, Variable: bpfVarTpOffProtocol},
					loader.Field{Name: "reason", Size: 4, Variable: bpfVarTpOffReason})
			}})
	if err != nil {
		obj.Close()
		return nil, err
	}
	if err := obj.AttachFirst(Program, rungs); err != nil {
		obj.Close()
		return nil, err
	}
	return p, nil
}

// Hook is the hook the program is attached by, or loader.HookNone.
func (p *Probe) Hook() string { return p.Hooks()[Program] }

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
	refused, err := nbpf.SumPerCPU[uint32](p.maps.Refused)
	if err != nil {
		return Counts{}, err
	}
	lost, err := nbpf.SumArraySlot(p.maps.Lost, 0)
	if err != nil {
		return Counts{}, err
	}
	// After the hash: a slot's counts never move to the hash, so the
	// order does not matter for the totals, only for freshness.
	if err := p.readSlots(func(ref slotRef, count uint64) {
		if base, ok := p.forgotten[ref]; ok {
			if count <= base {
				return
			}
			count -= base
		}
		byKey[ref.key] += count
	}); err != nil {
		return Counts{}, err
	}
	return Counts{ByKey: byKey, Overflow: over, Refused: refused, Lost: lost}, nil
}

// readSlots calls f for every CPU's copy of every slot that holds a key.
func (p *Probe) readSlots(f func(slotRef, uint64)) error {
	m := p.maps.Slots
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible CPUs: %w", err)
	}
	n := int(m.MaxEntries())
	if len(p.slotKeys) != n {
		p.slotKeys = make([]uint32, n)
		p.slotBuf = make([]bpfDropSlot, n*cpus)
	}
	var cursor ebpf.MapBatchCursor
	got, err := m.BatchLookup(&cursor, p.slotKeys, p.slotBuf, nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		// Before 5.6: one lookup per slot.
		got = 0
		for i := range n {
			var per []bpfDropSlot
			if err := m.Lookup(uint32(i), &per); err != nil {
				return fmt.Errorf("lookup slot %d: %w", i, err)
			}
			p.slotKeys[i] = uint32(i)
			copy(p.slotBuf[i*cpus:], per)
			got++
		}
	} else if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("batch lookup slots: %w", err)
	}
	for i := range got {
		for cpu, s := range p.slotBuf[i*cpus : (i+1)*cpus] {
			if s.Key.Reason != 0 {
				f(slotRef{index: int(p.slotKeys[i]), cpu: cpu, key: s.Key}, s.Count)
			}
		}
	}
	return nil
}

// Forget deletes counters, for label sets that are gone for good, and
// returns each key's final count: what the hash held when it was deleted
// (read and deleted in one step) plus its slots' counts since they were
// last forgotten. A count above the one the caller last read is a drop
// counted in between: a key's interface index can be reused by a new
// interface of the same namespace (a namespace's cookie is never reused),
// whose drops then land on the same key until it is deleted, and a caller
// that dropped them would lose them.
func (p *Probe) Forget(keys []Key) map[Key]uint64 {
	m := p.maps.Drops
	final := make(map[Key]uint64, len(keys))
	gone := make(map[Key]bool, len(keys))
	credit := map[bpfQuotaKey]uint64{}
	for _, k := range keys {
		gone[k] = true
		var per []uint64
		deleted := false
		if err := m.LookupAndDelete(k, &per); err == nil {
			deleted = true
			for _, v := range per {
				final[k] += v
			}
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			// LookupAndDelete on a per-CPU hash needs 5.14: delete alone.
			deleted = m.Delete(k) == nil
		}
		if !deleted {
			continue // in a slot only: never charged
		}
		if p.ifaceQuota {
			credit[bpfQuotaKey{Netns: k.Netns, Ifindex: k.Ifindex}]++
		}
		if p.netnsQuota && k.Netns != 0 && k.Netns != p.ownNetns {
			credit[bpfQuotaKey{Netns: k.Netns, Ifindex: quotaNetns}]++
		}
	}
	p.creditQuotas(credit)
	// Slots cannot be freed from user space without racing the program
	// on other CPUs: remember their counts instead.
	_ = p.readSlots(func(ref slotRef, count uint64) {
		if !gone[ref.key] {
			return
		}
		base := p.forgotten[ref]
		if count > base {
			final[ref.key] += count - base
		}
		p.forgotten[ref] = count
	})
	return final
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

// creditQuotas gives the interfaces and namespaces of deleted keys their
// room back, then deletes the entries of holders that hold nothing, so
// that the quota maps keep room as interfaces and namespaces come and go.
// The kernel only adds to quota_added and this only to quota_forgotten, so
// no update is lost; deleting an entry the kernel charges at the same
// instant can lose that one charge, letting its holder one key over.
func (p *Probe) creditQuotas(credit map[bpfQuotaKey]uint64) {
	if len(credit) == 0 {
		return
	}
	added, forgotten := p.maps.QuotaAdded, p.maps.QuotaForgotten
	gone, err := nbpf.ReadHash[bpfQuotaKey](forgotten)
	if err != nil {
		return // credited on the next Forget: its holders keep less room meanwhile
	}
	for q, n := range credit {
		gone[q] += n
		// Cannot be full, with an entry per charged holder at most; if it
		// were, the holder would keep less room than it has, no more.
		_ = forgotten.Put(q, gone[q])
	}
	charged, err := nbpf.ReadHash[bpfQuotaKey](added)
	if err != nil {
		return
	}
	for q, a := range charged {
		if int64(a-gone[q]) <= 0 {
			_ = added.Delete(q)
			_ = forgotten.Delete(q)
		}
	}
	// Credits whose charges are gone already (the entry was deleted idle
	// and never charged again).
	for q := range gone {
		if _, ok := charged[q]; !ok {
			_ = forgotten.Delete(q)
		}
	}
}
