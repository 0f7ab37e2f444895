// Package fragments loads netsonde's fragment counter: programs on every
// chosen interface (TCX, or cls_bpf below 6.6) counting IP fragments and
// ICMP frag-needed/packet-too-big, and a program on icmp_send counting the
// frag-needed messages this host sends.
package fragments

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf"

	nbpf "github.com/netsonde/netsonde/bpf"
	"github.com/netsonde/netsonde/bpf/loader"
)

// Key is one counter as the kernel keyed it.
type Key = bpfFragKey

// Key.What values and directions.
const (
	WhatFragment   = 0
	WhatFragNeeded = 1
	Ingress        = 0
	Egress         = 1
)

// Logical programs, as reported in netsonde_bpf_program_attached.
const (
	ProgramInterfaces = "fragments"
	ProgramICMPSend   = "icmp_send"
)

// Attach modes for interfaces.
const (
	ModeAuto = "auto"
	ModeTCX  = loader.HookTCX
	ModeTC   = loader.HookTC
)

// Options for Load.
type Options struct {
	// OwnNetns is the cookie of the agent's network namespace.
	OwnNetns uint64
	// Mode is how interfaces are attached: auto (TCX where the kernel
	// has it, else tc), tcx or tc.
	Mode string
	// ICMPGroup is the classic icmp_send tracepoint's group ("icmp");
	// with ICMPHooks it lets tests force the hook's absence.
	ICMPGroup string
	// ICMPHooks are tried in order; empty: tp_btf, raw_tp, fentry,
	// tracepoint.
	ICMPHooks []string
	// TracefsRoot: see loader.Options.
	TracefsRoot string
	// BTF is the kernel BTF shared by the objects loaded at start-up.
	BTF *loader.KernelBTF
	// MapSizes: see loader.Options (tests).
	MapSizes map[string]uint32
}

// Counter is the loaded object: the icmp_send counter attached once, and
// interface programs attached per interface with Attach.
//
// In auto mode on a kernel with TCX, start-up does not attach TCX one
// interface after another: every TCX attach waits for an RCU grace period
// under the RTNL lock (about 13 ms here), so 1,000 interfaces would take
// 27 s, whatever the parallelism. Start-up instead puts gated cls_bpf
// filters on every interface (about 1 ms each, in parallel), so counting is
// exact from the moment the agent is ready, then hands each interface over
// to TCX in the background: attach gated TCX programs, flip the interface's
// gate so TCX counts and tc does not, remove the tc filters, and swap the
// TCX programs for the plain ones, which never read the gate. Interfaces
// that appear later get TCX directly.
type Counter struct {
	*loader.Object
	progs map[string]*ebpf.Program
	tc    *loader.TC
	mode  string // auto, tcx or tc

	mu       sync.Mutex
	tcx      int // TCX support: 0 unknown, 1 yes, -1 no
	startup  bool
	attached map[int]*iface
	icmpErr  error
	handover sync.WaitGroup
	closed   bool
}

type iface struct {
	l3     bool
	hook   string // tc or tcx
	gated  bool   // a start-up tc attachment still to be handed to TCX
	closer io.Closer
}

// Gate values (fragments.c).
const (
	gateTC  = 1
	gateTCX = 2
)

// Load loads the programs and attaches the icmp_send counter. A missing
// icmp_send hook is reported by ICMPErr, not fatal: fragments are still
// counted.
func Load(opts Options) (*Counter, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	if err := spec.Variables["own_netns"].Set(opts.OwnNetns); err != nil {
		return nil, fmt.Errorf("set own_netns: %w", err)
	}
	mode := opts.Mode
	switch mode {
	case "":
		mode = ModeAuto
	case ModeAuto, ModeTCX, ModeTC:
	default:
		return nil, fmt.Errorf("unknown attach mode %q", opts.Mode)
	}
	obj, err := loader.New(spec, loader.Options{TracefsRoot: opts.TracefsRoot, BTF: opts.BTF, MapSizes: opts.MapSizes})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, kind := range []string{"eth", "l3"} {
		for _, dir := range []string{"ingress", "egress"} {
			for _, v := range []string{"", "_tc_gated", "_tcx_gated"} {
				names = append(names, "frag_"+dir+"_"+kind+v)
			}
		}
	}
	progs, err := obj.Load(names...)
	if err != nil {
		obj.Close()
		return nil, fmt.Errorf("load interface programs: %w", err)
	}
	tc, err := loader.NewTC("fragments")
	if err != nil {
		obj.Close()
		return nil, err
	}
	c := &Counter{Object: obj, progs: progs, tc: tc,
		mode: mode, startup: true, attached: map[int]*iface{}}
	rungs, err := icmpRungs(obj, opts)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.icmpErr = obj.AttachFirst(ProgramICMPSend, rungs)
	return c, nil
}

func icmpRungs(obj *loader.Object, opts Options) ([]loader.Rung, error) {
	group := opts.ICMPGroup
	if group == "" {
		group = "icmp"
	}
	return loader.Ladder(opts.ICMPHooks,
		loader.Rung{Hook: loader.HookTPBTF, Program: "icmp_send_btf", Target: "icmp_send"},
		loader.Rung{Hook: loader.HookRawTP, Program: "icmp_send_raw", Target: "icmp_send"},
		loader.Rung{Hook: loader.HookFentry, Program: "icmp_send_fentry", Target: "__icmp_send"},
		loader.Rung{Hook: loader.HookTracepoint, Program: "icmp_send_tp", Target: group + ":icmp_send",
			Prepare: func(ev *loader.Event) error {
				return obj.SetLayout(ev, loader.Field{Name: "type", Size: 4, Variable: "tp_off_type"},
					loader.Field{Name: "code", Size: 4, Variable: "tp_off_code"})
			}})
}

// ICMPErr says why the icmp_send counter is not attached (nil when it is).
func (c *Counter) ICMPErr() error { return c.icmpErr }

// Hooks reports, per hook in use on interfaces, whether any interface is
// attached by it (tc and tcx both appear during the start-up handover).
func (c *Counter) InterfaceHooks() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, f := range c.attached {
		out[f.hook]++
	}
	return out
}

func (c *Counter) pair(l3 bool, variant string) loader.Pair {
	kind := "eth"
	if l3 {
		kind = "l3"
	}
	return loader.Pair{Ingress: c.progs["frag_ingress_"+kind+variant], Egress: c.progs["frag_egress_"+kind+variant]}
}

// Attach puts the ingress and egress programs on an interface; l3 selects
// the programs for devices without an Ethernet header. Safe for concurrent
// use on different interfaces.
func (c *Counter) Attach(ifindex int, l3 bool) error {
	c.mu.Lock()
	if _, ok := c.attached[ifindex]; ok || c.closed {
		c.mu.Unlock()
		return nil
	}
	tcx, startup := c.tcx, c.startup
	c.mu.Unlock()

	f := &iface{l3: l3}
	var err error
	switch {
	case c.mode == ModeTC:
		f.hook = ModeTC
		f.closer, err = c.tc.Attach(ifindex, c.pair(l3, ""))
	case c.mode == ModeTCX:
		f.hook = ModeTCX
		f.closer, err = c.attachTCX(ifindex, l3, "")
	case tcx < 0:
		f.hook = ModeTC
		f.closer, err = c.tc.Attach(ifindex, c.pair(l3, ""))
	case tcx > 0 && startup:
		f.hook, f.gated = ModeTC, true
		f.closer, err = c.tc.Attach(ifindex, c.pair(l3, "_tc_gated"))
	default:
		// TCX where the kernel has it; the first ErrNotSupported
		// settles it for every later interface.
		f.hook = ModeTCX
		f.closer, err = c.attachTCX(ifindex, l3, "")
		if errors.Is(err, ebpf.ErrNotSupported) {
			c.setTCX(-1)
			f.hook = ModeTC
			f.closer, err = c.tc.Attach(ifindex, c.pair(l3, ""))
		} else if err == nil {
			c.setTCX(1)
		}
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		f.closer.Close()
		return nil
	}
	c.attached[ifindex] = f
	return nil
}

func (c *Counter) attachTCX(ifindex int, l3 bool, variant string) (io.Closer, error) {
	l, err := loader.AttachTCX(ifindex, c.pair(l3, variant))
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (c *Counter) setTCX(v int) {
	c.mu.Lock()
	c.tcx = v
	c.mu.Unlock()
}

// EndStartup ends the start-up phase: later interfaces get TCX directly,
// and the start-up tc attachments are handed over to TCX in the background.
// logf reports interfaces that could not be handed over (they keep
// counting through tc).
func (c *Counter) EndStartup(logf func(ifindex int, err error)) {
	c.mu.Lock()
	c.startup = false
	var todo []int
	for i, f := range c.attached {
		if f.gated {
			todo = append(todo, i)
		}
	}
	c.handover.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.handover.Done()
		for _, i := range todo {
			if err := c.handOver(i); err != nil && logf != nil {
				logf(i, err)
			}
		}
	}()
}

// WaitHandover waits until the start-up handover to TCX is done (tests).
func (c *Counter) WaitHandover() { c.handover.Wait() }

func (c *Counter) handOver(ifindex int) error {
	c.mu.Lock()
	f, ok := c.attached[ifindex]
	if c.closed || !ok || !f.gated {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	gate := c.Map("gate")
	key := uint32(ifindex)
	// 1. TCX programs that do not count yet (no gate entry means tc).
	l, err := loader.AttachTCX(ifindex, c.pair(f.l3, "_tcx_gated"))
	if err != nil {
		return err
	}
	// 2. The flip: from here TCX counts and tc does not. A packet whose
	// TCX run was before the flip and tc run after it is counted once
	// all the same: the gated TCX program leaves its decision in the
	// packet's control block for the tc program (fragments.c,
	// TestGateFlipsCountOnce).
	if err := gate.Put(key, uint8(gateTCX)); err != nil {
		l.Close()
		return fmt.Errorf("gate: %w", err)
	}
	// 3. Only TCX is left; 4. it gets the plain programs. The gate entry
	// stays (it says TCX) until Detach: a link update replaces the
	// program in place without waiting for packets still in the gated
	// one (unlike an attach, no RCU grace period), and such a packet
	// reading the gate after a delete would take it for tc's, which is
	// gone, and be counted nowhere.
	c.mu.Lock()
	old := f.closer
	f.closer, f.hook, f.gated = l, ModeTCX, false
	c.mu.Unlock()
	return errors.Join(old.Close(), l.Update(c.pair(f.l3, "")))
}

// Detach removes the programs from an interface (a deleted interface's
// attachments are already gone in the kernel; this frees ours).
func (c *Counter) Detach(ifindex int) {
	c.mu.Lock()
	f, ok := c.attached[ifindex]
	delete(c.attached, ifindex)
	c.mu.Unlock()
	if ok {
		f.closer.Close()
		_ = c.Map("gate").Delete(uint32(ifindex))
	}
}

// Attached lists the interfaces with programs.
func (c *Counter) Attached() map[int]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int]bool, len(c.attached))
	for i := range c.attached {
		out[i] = true
	}
	return out
}

// Read returns the counts since load.
func (c *Counter) Read() (map[Key]uint64, error) {
	return nbpf.SumPerCPU[Key](c.Map("frags"))
}

// Full returns how many packets found the counter map full (each one's
// count is lost).
func (c *Counter) Full() (uint64, error) {
	return nbpf.SumArraySlot(c.Map("full"), 0)
}

// Forget deletes the counters of an interface that is gone.
func (c *Counter) Forget(keys []Key) {
	m := c.Map("frags")
	for _, k := range keys {
		_ = m.Delete(k)
	}
}

// Close detaches everything and frees the maps.
func (c *Counter) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.handover.Wait()
	c.mu.Lock()
	closers := make([]io.Closer, 0, len(c.attached))
	for i, f := range c.attached {
		closers = append(closers, f.closer)
		delete(c.attached, i)
	}
	c.mu.Unlock()
	errs := []error{loader.CloseAll(closers)}
	errs = append(errs, c.Object.Close())
	return errors.Join(errs...)
}

// RunStats sums the kernel's run-time accounting (BPF_ENABLE_STATS must be
// on) over the interface programs: total run time in ns and run count.
func (c *Counter) RunStats() (uint64, uint64) {
	var ns, n uint64
	for _, p := range c.progs {
		if st, err := p.Stats(); err == nil {
			ns += uint64(st.Runtime.Nanoseconds())
			n += st.RunCount
		}
	}
	return ns, n
}
