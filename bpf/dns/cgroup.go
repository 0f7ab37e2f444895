package dns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/netsonde/netsonde/bpf/loader"
)

// attachCgroup attaches the cgroup_skb programs to opts.CgroupPath, or the
// root of the cgroup v2 hierarchy.
func (p *Probe) attachCgroup(opts Options) error {
	cg := opts.CgroupPath
	if cg == "" {
		var err error
		if cg, err = CgroupRoot("/proc/self/mountinfo"); err != nil {
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
	forms := []string{"", "_read"}
	switch opts.NetnsRead {
	case NetnsReadCast:
		forms = forms[:1]
	case NetnsReadProbe:
		forms = forms[1:]
	}
	for _, d := range []struct {
		prog string
		typ  ebpf.AttachType
	}{{ProgramEgress, ebpf.AttachCGroupInetEgress}, {ProgramIngress, ebpf.AttachCGroupInetIngress}} {
		typ := d.typ
		attach := func(prog *ebpf.Program) (io.Closer, error) {
			// A link, never a plain attach: it goes with the agent,
			// even after kill -9, and coexists with other programs on
			// the root cgroup (BPF_F_ALLOW_MULTI semantics).
			return link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: typ, Program: prog})
		}
		var rungs []loader.Rung
		for _, f := range forms {
			rungs = append(rungs, loader.Rung{Hook: loader.HookCgroupSkb, Program: d.prog + f, Target: cg, Attach: attach})
		}
		if err := p.AttachFirst(d.prog, rungs); err != nil {
			return err
		}
	}
	return nil
}

// CgroupRoot returns the mount point of the cgroup v2 hierarchy whose root
// is mounted (the root "/" of the hierarchy, not a container's subtree) in
// a mountinfo file.
func CgroupRoot(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	return parseCgroupRoot(f)
}

func parseCgroupRoot(r io.Reader) (string, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	var sub string
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		f := strings.Fields(s.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(f) || f[sep+1] != "cgroup2" {
			continue
		}
		if f[3] == "/" {
			return unescapeMount(f[4]), nil
		}
		if sub == "" {
			sub = f[3]
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if sub != "" {
		// A container's own cgroup namespace: attaching there would see
		// only the container's sockets, never the pods'.
		return "", fmt.Errorf("cgroup2 is mounted only from %q, not its root: mount the host's /sys/fs/cgroup (a hostPath volume) and give its path", sub)
	}
	return "", errors.New("no cgroup2 mount: the node must use cgroup v2")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
