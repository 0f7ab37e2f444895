// Package tcp loads netsonde's TCP retransmit counter: BPF programs on the
// tcp:tcp_retransmit_skb and tcp:tcp_retransmit_synack tracepoints.
package tcp

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	nbpf "github.com/netsonde/netsonde/bpf"
)

// Key is one counter's label set as the kernel keyed it.
type Key = bpfRetransKey

// Program names, as reported in netsonde_bpf_program_attached.
const (
	ProgramSkb    = "tcp_retransmit_skb"
	ProgramSynack = "tcp_retransmit_synack"
)

// Counter is the loaded and attached counter.
type Counter struct {
	objs  bpfObjects
	links []link.Link
}

// Load loads and attaches both programs to the tracepoints of group
// ("tcp"; tests name a missing group to force the hook's absence).
func Load(group, tracefs string) (*Counter, error) {
	if group == "" {
		group = "tcp"
	}
	c := &Counter{}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("parse embedded object: %w", err)
	}
	if err := spec.Variables["has_err"].Set(hasErrField(tracefs)); err != nil {
		return nil, fmt.Errorf("set has_err: %w", err)
	}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{{ProgramSkb, c.objs.RetransmitSkb}, {ProgramSynack, c.objs.RetransmitSynack}} {
		l, err := link.Tracepoint(group, tp.name, tp.prog, nil)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("attach %s:%s: %w", group, tp.name, err)
		}
		c.links = append(c.links, l)
	}
	return c, nil
}

// Read returns the counts since load.
func (c *Counter) Read() (map[Key]uint64, error) {
	return nbpf.SumPerCPU[Key](c.objs.Retrans)
}

// Close detaches and frees everything.
func (c *Counter) Close() error {
	var errs []error
	for _, l := range c.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, c.objs.Close())
	return errors.Join(errs...)
}

// hasErrField reads the tracepoint's format: since 6.13 it has an err
// field at offset 76 and fires for failed retransmits too.
func hasErrField(tracefs string) uint8 {
	b, err := os.ReadFile(tracefs + "/events/tcp/tcp_retransmit_skb/format")
	if err == nil && strings.Contains(string(b), "field:int err;\toffset:76;") {
		return 1
	}
	return 0
}
