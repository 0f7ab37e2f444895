package dns

import (
	bpfdns "github.com/netsonde/netsonde/bpf/dns"
	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/hostview"
)

// hookAuto picks the hook by the node (--dns.hook=auto).
const hookAuto = "auto"

// autoHook is tc unless the node's dataplane hides pods' packets from
// their veths' TC hooks or has no veths: Cilium's BPF host routing and
// Calico's eBPF mode deliver to a pod with bpf_redirect_peer, past its
// veth's egress, so answers would go unseen and every query time out;
// netkit pods have no veth. Those take the cgroup hook.
func autoHook(net collectors.HostNet) (string, string) {
	if net == nil {
		return bpfdns.HookCgroup, "no link view"
	}
	for _, l := range net.Links() {
		switch {
		case l.Name == "cilium_host":
			return bpfdns.HookCgroup, "Cilium (cilium_host) may deliver to pods past their veths"
		case l.Name == "bpfin.cali" || l.Name == "bpfout.cali":
			return bpfdns.HookCgroup, "Calico's eBPF dataplane (" + l.Name + ") may deliver to pods past their veths"
		case l.Kind == "netkit":
			return bpfdns.HookCgroup, "netkit pods (" + l.Name + ") have no veth"
		}
	}
	return bpfdns.HookTC, ""
}

// ifaceFlags is how the TC programs treat an interface (bpfdns.Iface*)
// and whether it has no Ethernet header.
func ifaceFlags(l hostview.Link) (uint32, bool) {
	var flags uint32
	// A veth whose peer is in another namespace: a pod's (or a test's
	// namespace's). NetNsID is -1 when the peer is in this one.
	if l.Kind == "veth" && l.NetNsID >= 0 {
		flags |= bpfdns.IfacePod
	}
	// A bridge's, bond's, team's or VRF's port: its master sent the
	// node's packets first.
	if l.MasterIndex > 0 {
		flags |= bpfdns.IfaceEnslaved
	}
	l3 := false
	if l.Attrs != nil {
		// lo has an Ethernet header at TC, as veths and NICs do.
		enc := l.Attrs.Attrs().EncapType
		l3 = enc != "ether" && enc != "loopback" && enc != ""
	}
	return flags, l3
}

// sync puts the TC programs on every interface of the node's namespace
// that has none, updates the flags of those whose role changed, and takes
// them off the interfaces that are gone: one pass over the link view per
// batch of link events, the attaches overlapped (one after another, 1,001
// interfaces took 7 s at start-up, past the agent's readiness).
func (c *collector) sync() {
	links := c.deps.Net.Links()
	want := make(map[int]hostview.Link, len(links))
	for _, l := range links {
		want[l.Index] = l
	}
	have := c.probe.Attached()
	var jobs []func()
	for idx := range have {
		if _, ok := want[idx]; !ok {
			jobs = append(jobs, func() { c.probe.Detach(idx) })
		}
	}
	for idx, l := range want {
		flags, l3 := ifaceFlags(l)
		if f, ok := have[idx]; ok && f == flags {
			continue
		}
		jobs = append(jobs, func() {
			if err := c.probe.Attach(idx, l3, flags); err != nil {
				// Deleted while we attached: not a failure.
				if _, still := c.deps.Net.ByIndex(idx); still {
					c.attachFailures.Add(1)
					c.deps.Logger.Warn("cannot watch DNS on interface", "interface", l.Name, "err", err)
				}
			}
		})
	}
	loader.Overlap(jobs)
}
