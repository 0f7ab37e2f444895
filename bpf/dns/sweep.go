package dns

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Swept is what one sweep closed as timeouts, per owner (as in QueryKey)
// and per name hash (0: no name kept), and how many queries are in flight.
type Swept struct {
	ByOwner map[uint64]uint64
	ByName  map[uint64]uint64
	Live    int
}

// Sweep closes the queries older than timeout in the in-flight table.
// A query is closed once: by its answer, by a query that displaces it
// from its slot, or by this sweep, whichever frees its slot first.
func (p *Probe) Sweep(timeout time.Duration) (Swept, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return Swept{}, fmt.Errorf("clock: %w", err)
	}
	now := uint64(ts.Nano())
	limit := uint64(timeout.Nanoseconds())
	// Load took only an array (sizeInflight).
	return p.sweepArray(now, limit)
}

// sweepArray is Sweep for the in-flight array (BPF_F_MMAPABLE): its
// slots are read in place, through a shared mapping of the map's memory,
// and an old one is closed by a compare-and-swap of its ts to 0, as an
// answer closes it in the kernel: whoever zeroes ts owns the query.
//
// cilium/ebpf's Map.Memory gives only ReadAt and WriteAt (copies), with
// which a slot cannot be claimed only if unchanged, and its typed
// pointers are for global variables behind a build tag; so the map is
// mapped here with mmap(2) on its descriptor. The mapping is outside Go's
// heap and lives only for this call. A closed query's slot is given back
// to its owner's count (owner_inflight, mapped the same way) as the
// kernel gives it back on an answer.
func (p *Probe) sweepArray(now, limit uint64) (Swept, error) {
	m := p.maps.Inflight
	const slotSize = int(unsafe.Sizeof(FlowVal{}))
	if int(m.ValueSize()) != slotSize {
		return Swept{}, fmt.Errorf("in-flight slot is %d bytes, want %d", m.ValueSize(), slotSize)
	}
	n := int(m.MaxEntries())
	mem, err := mapShared(m, "in-flight queries")
	if err != nil {
		return Swept{}, err
	}
	defer func() { _ = unix.Munmap(mem) }() // our own mapping: nothing to do if it fails
	om := p.maps.OwnerInflight
	if om.ValueSize() != 8 || om.MaxEntries()&(om.MaxEntries()-1) != 0 {
		return Swept{}, fmt.Errorf("owner_inflight: %d values of %d bytes, want a power of two of 8", om.MaxEntries(), om.ValueSize())
	}
	owners, err := mapShared(om, "in-flight counts")
	if err != nil {
		return Swept{}, err
	}
	defer func() { _ = unix.Munmap(owners) }()
	ownerMask := int(om.MaxEntries()) - 1
	out := Swept{ByOwner: map[uint64]uint64{}, ByName: map[uint64]uint64{}}
	for i := 0; i < n; i++ {
		slot := (*FlowVal)(unsafe.Pointer(&mem[i*slotSize]))
		ts := atomic.LoadUint64(&slot.Ts)
		if ts == 0 {
			continue
		}
		// 1: being written, a query that has just left.
		if ts == 1 || now <= ts || now-ts <= limit {
			out.Live++
			continue
		}
		// Read before the claim: an unchanged ts means they are this
		// query's (a slot rewritten in between has another ts).
		owner, name := slot.Owner, slot.Name
		if atomic.CompareAndSwapUint64(&slot.Ts, ts, 0) {
			i := ownerIndex(owner, ownerMask)
			atomic.AddInt64((*int64)(unsafe.Pointer(&owners[i*8])), -1)
			out.ByOwner[owner]++
			if name != 0 {
				out.ByName[name]++
			}
		}
	}
	return out, nil
}

// mapShared maps an mmapable array's values, read and write, shared with
// the kernel: the caller unmaps it. The kernel lays them out 8 bytes
// apart at least (a value of 4 bytes takes 8).
func mapShared(m *ebpf.Map, what string) ([]byte, error) {
	size := int(m.MaxEntries()) * int((m.ValueSize()+7)&^7)
	if pg := unix.Getpagesize(); size%pg != 0 {
		size += pg - size%pg
	}
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", what, err)
	}
	return mem, nil
}

// ownerIndex is owner_count() in dns.c: an owner's (an interface index, a
// namespace cookie) low bits.
func ownerIndex(owner uint64, mask int) int {
	return int(uint32(owner)) & mask
}
