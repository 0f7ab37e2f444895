package dns

import (
	bpfdns "github.com/netsonde/netsonde/bpf/dns"
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

// wantIface: every interface of the node's namespace has the TC programs,
// as ifaceFlags says.
func wantIface(l hostview.Link) (bpfdns.Iface, bool) {
	flags, l3 := ifaceFlags(l)
	return bpfdns.Iface{L3: l3, Flags: flags}, true
}
