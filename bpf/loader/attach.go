package loader

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf"
)

// AttachAuto attaches interfaces by TCX where the kernel has it, else by
// tc (AttachOptions.Mode; HookTCX and HookTC force one).
const AttachAuto = "auto"

// Gate values (AttachOptions.Gate): which of an interface's two start-up
// attachments counts. No entry means tc. The gated programs read them
// (GATE_TC and GATE_TCX in bpf/fragments/fragments.c).
const (
	GateTC  = 1
	GateTCX = 2
)

// Programs is what goes on one interface.
type Programs struct {
	Pair
	// TCGated and TCXGated are Pair's variants that read the start-up gate
	// (AttachOptions.Gate): the tc one counts while the interface's gate
	// entry is missing or GateTC, the TCX one while it is GateTCX, and the
	// TCX one leaves its decision in the packet's control block for the
	// tc one, so that a packet that crosses the flip between the two is
	// counted once.
	TCGated, TCXGated Pair
}

// AttachOptions says how Attachments puts programs on interfaces.
type AttachOptions[T comparable] struct {
	// What names the tc filters ("dns", "fragments").
	What string
	// Mode: AttachAuto (also ""): TCX, and tc on a kernel without it (the
	// first attach that finds no TCX settles it for the later ones);
	// HookTCX: TCX only; HookTC: tc only.
	Mode string
	// First puts the TCX programs ahead of every program already on the
	// interface: a program that only counts must see a packet before
	// another one (a dataplane's, a policy's) redirects or drops it.
	First bool
	// Programs gives the programs for an interface and its value. It runs
	// before every Attach, of an interface already attached too, and
	// before the programs go on: whatever they read per interface (dns's
	// flags) goes in there, so that they never run without it.
	Programs func(ifindex int, v T) (Programs, error)
	// Forget, if set, runs after an interface's programs are taken off
	// it, or failed to go on: it deletes what Programs put in maps. Close
	// does not run it (the maps go with the object).
	Forget func(ifindex int)
	// Gate, if set, is the start-up gate (u32 ifindex → u8 GateTC or
	// GateTCX) for AttachAuto on a kernel with TCX. Every TCX attach
	// waits for an RCU grace period under the RTNL lock (about 13 ms on a
	// 2-CPU machine), so 1,000 interfaces would take 27 s to attach
	// whatever the parallelism. Until EndStartup, interfaces instead get
	// the gated tc programs (about 1 ms each, in parallel), counting from
	// the moment the agent is ready; EndStartup then hands each one over
	// to TCX in the background: gated TCX programs on, the gate flipped to
	// TCX, the tc filters off (the clsact qdisc stays: deleting it drops
	// traffic), and the TCX link updated to the plain programs, which
	// never read the gate. Interfaces that come later get TCX directly.
	Gate *ebpf.Map
}

// Attachments keeps a set of programs on interfaces, one attachment per
// ifindex, each with a value T the caller chose it by (whether it is an
// L3 device, the flags the programs read): by TCX (6.6+) or by tc (a
// clsact qdisc and cls_bpf filters), remembering which. Safe for
// concurrent use on different interfaces.
type Attachments[T comparable] struct {
	opts AttachOptions[T]
	tc   *TC

	mu       sync.Mutex
	tcx      int // TCX support: 0 unknown, 1 yes, -1 no
	startup  bool
	attached map[int]*attachment[T]
	handover sync.WaitGroup
	closed   bool
}

type attachment[T comparable] struct {
	v      T
	progs  Programs
	hook   string // HookTC or HookTCX
	gated  bool   // a start-up tc attachment still to be handed to TCX
	closer io.Closer
}

// NewAttachments prepares per-interface attachment. Close takes every
// program off its interfaces: add it to the object (Object.AddCloser) so
// that it runs before the programs are freed.
func NewAttachments[T comparable](opts AttachOptions[T]) (*Attachments[T], error) {
	switch opts.Mode {
	case "":
		opts.Mode = AttachAuto
	case AttachAuto, HookTCX, HookTC:
	default:
		return nil, fmt.Errorf("unknown attach mode %q (want %s, %s or %s)", opts.Mode, AttachAuto, HookTCX, HookTC)
	}
	tc, err := NewTC(opts.What)
	if err != nil {
		return nil, err
	}
	return &Attachments[T]{opts: opts, tc: tc, startup: true, attached: map[int]*attachment[T]{}}, nil
}

// Attach puts the programs for v on an interface of the calling thread's
// network namespace. On an interface already attached it only records v
// (after Programs has run with it).
func (a *Attachments[T]) Attach(ifindex int, v T) error {
	progs, err := a.opts.Programs(ifindex, v)
	if err != nil {
		return fmt.Errorf("interface %d: %w", ifindex, err)
	}
	a.mu.Lock()
	if f, ok := a.attached[ifindex]; ok || a.closed {
		if ok {
			f.v = v
		}
		a.mu.Unlock()
		return nil
	}
	tcx, startup := a.tcx, a.startup
	a.mu.Unlock()

	f := &attachment[T]{v: v, progs: progs}
	switch {
	case a.opts.Mode == HookTC || a.opts.Mode == AttachAuto && tcx < 0:
		f.hook = HookTC
		f.closer, err = a.tc.Attach(ifindex, progs.Pair)
	case a.opts.Mode == HookTCX:
		f.hook = HookTCX
		f.closer, err = a.attachTCX(ifindex, progs.Pair)
	case a.opts.Gate != nil && tcx > 0 && startup:
		f.hook, f.gated = HookTC, true
		f.closer, err = a.tc.Attach(ifindex, progs.TCGated)
	default:
		f.hook = HookTCX
		f.closer, err = a.attachTCX(ifindex, progs.Pair)
		if errors.Is(err, ebpf.ErrNotSupported) {
			a.setTCX(-1)
			f.hook = HookTC
			f.closer, err = a.tc.Attach(ifindex, progs.Pair)
		} else if err == nil {
			a.setTCX(1)
		}
	}
	if err != nil {
		if a.opts.Forget != nil {
			a.opts.Forget(ifindex)
		}
		return fmt.Errorf("interface %d: %w", ifindex, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		f.closer.Close()
		return nil
	}
	a.attached[ifindex] = f
	return nil
}

func (a *Attachments[T]) attachTCX(ifindex int, p Pair) (io.Closer, error) {
	var l *TCXLink
	var err error
	if a.opts.First {
		l, err = AttachTCXFirst(ifindex, p)
	} else {
		l, err = AttachTCX(ifindex, p)
	}
	if err != nil {
		return nil, err // not a nil *TCXLink in an io.Closer
	}
	return l, nil
}

func (a *Attachments[T]) setTCX(v int) {
	a.mu.Lock()
	a.tcx = v
	a.mu.Unlock()
}

// Detach takes the programs off an interface (one that was deleted: its
// attachments are gone in the kernel already; this frees ours).
func (a *Attachments[T]) Detach(ifindex int) {
	a.mu.Lock()
	f, ok := a.attached[ifindex]
	var closer io.Closer
	if ok {
		closer = f.closer // the handover may swap it
	}
	delete(a.attached, ifindex)
	a.mu.Unlock()
	if ok {
		closer.Close()
		if a.opts.Forget != nil {
			a.opts.Forget(ifindex)
		}
	}
}

// Attached returns the interfaces with programs and their values.
func (a *Attachments[T]) Attached() map[int]T {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int]T, len(a.attached))
	for i, f := range a.attached {
		out[i] = f.v
	}
	return out
}

// Hooks counts the interfaces attached by each hook (HookTC, HookTCX):
// both appear during the start-up handover.
func (a *Attachments[T]) Hooks() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Counted in two integers, not in the map: this runs on every scrape
	// over every interface (a map increment each was a tenth of a
	// millisecond a scrape at 1,000 interfaces).
	var tc, tcx int
	for _, f := range a.attached {
		if f.hook == HookTCX {
			tcx++
		} else {
			tc++
		}
	}
	out := make(map[string]int, 2)
	if tc > 0 {
		out[HookTC] = tc
	}
	if tcx > 0 {
		out[HookTCX] = tcx
	}
	return out
}

// Each calls f with every attached interface and its value, under the
// lock (f must not call back into a): what Attached gives, without a copy
// of the map on every scrape.
func (a *Attachments[T]) Each(f func(ifindex int, v T)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, at := range a.attached {
		f(i, at.v)
	}
}

// EndStartup ends the start-up phase: later interfaces get TCX directly,
// and the gated start-up tc attachments, if any, are handed over to TCX in
// the background. logf reports interfaces that could not be handed over
// (they keep counting through tc).
func (a *Attachments[T]) EndStartup(logf func(ifindex int, err error)) {
	a.mu.Lock()
	a.startup = false
	var todo []int
	for i, f := range a.attached {
		if f.gated {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		a.mu.Unlock()
		return
	}
	a.handover.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.handover.Done()
		for _, i := range todo {
			if err := a.handOver(i); err != nil && logf != nil {
				logf(i, err)
			}
		}
	}()
}

// WaitHandover waits until the start-up handover to TCX is done (tests).
func (a *Attachments[T]) WaitHandover() { a.handover.Wait() }

func (a *Attachments[T]) handOver(ifindex int) error {
	a.mu.Lock()
	f, ok := a.attached[ifindex]
	if a.closed || !ok || !f.gated {
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()
	// 1. TCX programs that do not count yet (no gate entry means tc).
	l, err := AttachTCX(ifindex, f.progs.TCXGated)
	if err != nil {
		return err
	}
	// 2. The flip: from here TCX counts and tc does not. A packet whose
	// TCX run was before the flip and tc run after it is counted once
	// all the same (Programs.TCXGated).
	if err := a.opts.Gate.Put(uint32(ifindex), uint8(GateTCX)); err != nil {
		l.Close()
		return fmt.Errorf("gate: %w", err)
	}
	// 3. Only TCX is left; 4. it gets the plain programs. The gate entry
	// stays (it says TCX) until Forget: a link update replaces the
	// program in place without waiting for packets still in the gated
	// one (unlike an attach, no RCU grace period), and such a packet
	// reading the gate after a delete would take it for tc's, which is
	// gone, and be counted nowhere.
	a.mu.Lock()
	if a.attached[ifindex] != f {
		// Detached (or closed) meanwhile: it took the tc filters.
		a.mu.Unlock()
		return l.Close()
	}
	old := f.closer
	f.closer, f.hook, f.gated = l, HookTCX, false
	a.mu.Unlock()
	// The tc filters off; the clsact qdisc stays (tcLink.Close).
	return errors.Join(old.Close(), l.Update(f.progs.Pair))
}

// Close takes the programs off every interface, Overlap at a time, so in
// the process's network namespace (where the agent attaches: the tc
// filters are deleted by ifindex there). Attaches after it do nothing.
func (a *Attachments[T]) Close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.handover.Wait()
	a.mu.Lock()
	closers := make([]io.Closer, 0, len(a.attached))
	for i, f := range a.attached {
		closers = append(closers, f.closer)
		delete(a.attached, i)
	}
	a.mu.Unlock()
	return CloseAll(closers)
}
