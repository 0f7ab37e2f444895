package dns

import (
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/internal/decode"
)

// attachCgroup attaches the cgroup_skb programs to opts.CgroupPath, or the
// root of the cgroup v2 hierarchy.
func (p *Probe) attachCgroup(opts Options) error {
	cg := opts.CgroupPath
	if cg == "" {
		var err error
		if cg, err = decode.CgroupRoot("/proc/self/mountinfo"); err != nil {
			// No cgroup2 mount in sight: open the hierarchy's root
			// through a private mount. The links keep the cgroup once
			// attached, so the file is closed after.
			f, perr := loader.PrivateCgroupRoot()
			if perr != nil {
				return fmt.Errorf("%w; %w", err, perr)
			}
			defer f.Close()
			cg = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
			p.Cgroup = "/ (cgroup2 root, mounted privately)"
		}
	}
	if p.Cgroup == "" {
		p.Cgroup = cg
	}
	// Each logical program has two forms, by how it reads the socket's
	// network namespace: bpf_rdonly_cast (6.2+), then
	// bpf_probe_read_kernel (older kernels). Both are cgroup_skb.
	from, to := 0, 2
	switch opts.NetnsRead {
	case NetnsReadCast:
		to = 1
	case NetnsReadProbe:
		from = 1
	}
	for _, d := range []struct {
		prog  string
		forms [2]string
		typ   ebpf.AttachType
	}{
		{ProgramEgress, [2]string{bpfProgDnsEgress, bpfProgDnsEgressRead}, ebpf.AttachCGroupInetEgress},
		{ProgramIngress, [2]string{bpfProgDnsIngress, bpfProgDnsIngressRead}, ebpf.AttachCGroupInetIngress},
	} {
		typ := d.typ
		attach := func(prog *ebpf.Program) (io.Closer, error) {
			// A link, never a plain attach: it goes with the agent,
			// even after kill -9, and coexists with other programs on
			// the root cgroup (BPF_F_ALLOW_MULTI semantics).
			return link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: typ, Program: prog})
		}
		var rungs []loader.Rung
		for _, prog := range d.forms[from:to] {
			rungs = append(rungs, loader.Rung{Hook: loader.HookCgroupSkb, Program: prog, Target: cg, Attach: attach})
		}
		if err := p.AttachFirst(d.prog, rungs); err != nil {
			return err
		}
	}
	return nil
}
