// Package frag loads netsonde's fragment counter: TCX programs counting IP
// fragments and ICMP frag-needed/packet-too-big per interface, and a
// tracepoint program counting the frag-needed messages this host sends.
package frag

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	nbpf "github.com/netsonde/netsonde/bpf"
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

// Counter is the loaded object: the icmp_send program attached once, and
// TCX programs attached per interface with Attach.
type Counter struct {
	objs     bpfObjects
	icmpLink link.Link // nil when the tracepoint could not be attached

	mu       sync.Mutex
	attached map[int][2]link.Link
}

// Options for Load.
type Options struct {
	// OwnNetns is the inode of the agent's network namespace.
	OwnNetns uint32
	// ICMPGroup is the icmp_send tracepoint's group ("icmp"); tests set a
	// missing one to force the hook's absence.
	ICMPGroup string
}

// Load loads the programs and attaches the icmp_send counter. A missing
// icmp_send tracepoint is reported by ICMPErr, not fatal: fragments are
// still counted.
func Load(opts Options) (c *Counter, icmpErr error, err error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, nil, fmt.Errorf("parse embedded object: %w", err)
	}
	if err := spec.Variables["own_netns"].Set(opts.OwnNetns); err != nil {
		return nil, nil, fmt.Errorf("set own_netns: %w", err)
	}
	c = &Counter{attached: map[int][2]link.Link{}}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		return nil, nil, fmt.Errorf("load: %w", err)
	}
	group := opts.ICMPGroup
	if group == "" {
		group = "icmp"
	}
	if l, err := link.Tracepoint(group, "icmp_send", c.objs.IcmpSend, nil); err != nil {
		icmpErr = fmt.Errorf("attach %s:icmp_send: %w", group, err)
	} else {
		c.icmpLink = l
	}
	return c, icmpErr, nil
}

// Attach puts the ingress and egress programs on an interface; l3 selects
// the programs for devices without an Ethernet header.
func (c *Counter) Attach(ifindex int, l3 bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.attached[ifindex]; ok {
		return nil
	}
	in, out := c.objs.FragIngressEth, c.objs.FragEgressEth
	if l3 {
		in, out = c.objs.FragIngressL3, c.objs.FragEgressL3
	}
	li, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: in, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("attach ingress: %w", err)
	}
	lo, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: out, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		li.Close()
		return fmt.Errorf("attach egress: %w", err)
	}
	c.attached[ifindex] = [2]link.Link{li, lo}
	return nil
}

// Detach removes the programs from an interface (a deleted interface's
// links are already gone in the kernel; this frees ours).
func (c *Counter) Detach(ifindex int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ls, ok := c.attached[ifindex]; ok {
		ls[0].Close()
		ls[1].Close()
		delete(c.attached, ifindex)
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

// ICMPAttached says whether the icmp_send counter runs.
func (c *Counter) ICMPAttached() bool { return c.icmpLink != nil }

// Read returns the counts since load.
func (c *Counter) Read() (map[Key]uint64, error) {
	return nbpf.SumPerCPU[Key](c.objs.Frags)
}

// Forget deletes the counters of an interface that is gone.
func (c *Counter) Forget(keys []Key) {
	for _, k := range keys {
		_ = c.objs.Frags.Delete(k)
	}
}

// Close detaches everything and frees the maps.
func (c *Counter) Close() error {
	c.mu.Lock()
	for i, ls := range c.attached {
		ls[0].Close()
		ls[1].Close()
		delete(c.attached, i)
	}
	c.mu.Unlock()
	var errs []error
	if c.icmpLink != nil {
		errs = append(errs, c.icmpLink.Close())
	}
	errs = append(errs, c.objs.Close())
	return errors.Join(errs...)
}

// RunStats sums the kernel's run-time accounting (BPF_ENABLE_STATS must be
// on) over the TCX programs: total run time in ns and run count.
func (c *Counter) RunStats() (uint64, uint64) {
	var ns, n uint64
	for _, p := range []*ebpf.Program{c.objs.FragIngressEth, c.objs.FragEgressEth, c.objs.FragIngressL3, c.objs.FragEgressL3} {
		if st, err := p.Stats(); err == nil {
			ns += uint64(st.Runtime.Nanoseconds())
			n += st.RunCount
		}
	}
	return ns, n
}
