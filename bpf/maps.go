// Package bpf holds netsonde's eBPF programs, one family per subpackage
// (C source, bpf2go output, loader), and the few helpers they share for
// reading the counters they keep in the kernel.
package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// batchSize is how many entries one BPF_MAP_LOOKUP_BATCH call returns:
// about 20 ns per entry, against ~1.5 µs per entry when iterating.
const batchSize = 256

// SumPerCPU reads a per-CPU hash map of uint64 counters and returns each
// key's sum over CPUs. It uses batch lookups, and falls back to iteration
// on kernels without them (before 5.6).
func SumPerCPU[K comparable](m *ebpf.Map) (map[K]uint64, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("possible CPUs: %w", err)
	}
	out := make(map[K]uint64)
	keys := make([]K, batchSize)
	vals := make([]uint64, batchSize*cpus)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			var sum uint64
			for _, v := range vals[i*cpus : (i+1)*cpus] {
				sum += v
			}
			out[keys[i]] += sum
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return iterate[K](m)
		}
		if err != nil {
			return nil, fmt.Errorf("batch lookup %s: %w", m, err)
		}
	}
}

func iterate[K comparable](m *ebpf.Map) (map[K]uint64, error) {
	out := make(map[K]uint64)
	var k K
	var per []uint64
	it := m.Iterate()
	for it.Next(&k, &per) {
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[k] += sum
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", m, err)
	}
	return out, nil
}

// SumArraySlot returns slot idx of a per-CPU array of uint64, summed.
func SumArraySlot(m *ebpf.Map, idx uint32) (uint64, error) {
	var per []uint64
	if err := m.Lookup(idx, &per); err != nil {
		return 0, fmt.Errorf("lookup %s[%d]: %w", m, idx, err)
	}
	var sum uint64
	for _, v := range per {
		sum += v
	}
	return sum, nil
}

// SumArraySlots returns slots 0, 1, ... of a per-CPU array of uint64,
// summed, under the names given in slot order (an object's full map:
// netsonde_bpf_map_full_total by map name).
func SumArraySlots(m *ebpf.Map, names ...string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(names))
	for i, name := range names {
		n, err := SumArraySlot(m, uint32(i))
		if err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, nil
}

// ReadHash reads a (not per-CPU) hash map of uint64 values whole, by batch
// lookups, or by iteration on kernels without them (before 5.6).
func ReadHash[K comparable](m *ebpf.Map) (map[K]uint64, error) {
	out := make(map[K]uint64)
	keys := make([]K, batchSize)
	vals := make([]uint64, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			out[keys[i]] = vals[i]
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("batch lookup %s: %w", m, err)
		}
	}
	clear(out)
	var k K
	var v uint64
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", m, err)
	}
	return out, nil
}
