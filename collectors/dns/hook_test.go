package dns

import (
	"testing"

	"github.com/vishvananda/netlink"

	bpfdns "github.com/netsonde/netsonde/bpf/dns"
	"github.com/netsonde/netsonde/internal/golden"
	"github.com/netsonde/netsonde/internal/hostview"
)

// TestAutoHook: the TC hook, except on nodes whose dataplane delivers to
// pods past their veths or has no veths.
func TestAutoHook(t *testing.T) {
	for _, c := range []struct {
		name  string
		extra []hostview.Link
		want  string
	}{
		{"flannel bridge node", nil, bpfdns.HookTC},
		{"Cilium", []hostview.Link{{Index: 50, Name: "cilium_host", Kind: "veth", NetNsID: -1}}, bpfdns.HookCgroup},
		{"Calico eBPF", []hostview.Link{{Index: 50, Name: "bpfin.cali", Kind: "veth", NetNsID: -1}}, bpfdns.HookCgroup},
		{"netkit", []hostview.Link{{Index: 50, Name: "nk0", Kind: "netkit", NetNsID: 3}}, bpfdns.HookCgroup},
		{"Calico iptables", []hostview.Link{{Index: 50, Name: "cali12345", Kind: "veth", NetNsID: 3}}, bpfdns.HookTC},
	} {
		got, why := autoHook(golden.Node(c.extra...))
		if got != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, got, why, c.want)
		}
		if got == bpfdns.HookCgroup && why == "" {
			t.Errorf("%s: cgroup without a reason", c.name)
		}
	}
	if got, _ := autoHook(nil); got != bpfdns.HookCgroup {
		t.Errorf("no link view: %s, want cgroup", got)
	}
}

// TestIfaceFlags: a veth to another namespace is a pod's, a port of a
// bridge or bond is marked enslaved, and devices without an Ethernet
// header take the l3 programs (lo has one at TC).
func TestIfaceFlags(t *testing.T) {
	attrs := func(enc string) netlink.Link {
		return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{EncapType: enc}}
	}
	for _, c := range []struct {
		link  hostview.Link
		flags uint32
		l3    bool
	}{
		{hostview.Link{Index: golden.IfLo, Kind: "device", NetNsID: -1, Attrs: attrs("loopback")}, 0, false},
		{hostview.Link{Index: golden.IfEth0, Kind: "device", NetNsID: -1, Attrs: attrs("ether")}, 0, false},
		{hostview.Link{Index: golden.IfPodVeth, Kind: "veth", NetNsID: 0, MasterIndex: golden.IfCNI0, Attrs: attrs("ether")}, bpfdns.IfacePod | bpfdns.IfaceEnslaved, false},
		{hostview.Link{Index: golden.IfOtherVeth, Kind: "veth", NetNsID: 1, Attrs: attrs("ether")}, bpfdns.IfacePod, false},
		{hostview.Link{Index: 60, Kind: "veth", NetNsID: -1, Attrs: attrs("ether")}, 0, false}, // both ends here
		{hostview.Link{Index: 61, Kind: "wireguard", NetNsID: -1, Attrs: attrs("none")}, 0, true},
		{hostview.Link{Index: 62, Kind: "bond", NetNsID: -1, MasterIndex: 0, Attrs: attrs("ether")}, 0, false},
		{hostview.Link{Index: 63, Kind: "device", NetNsID: -1, MasterIndex: 62, Attrs: attrs("ether")}, bpfdns.IfaceEnslaved, false}, // a bond's slave
	} {
		flags, l3 := ifaceFlags(c.link)
		if flags != c.flags || l3 != c.l3 {
			t.Errorf("link %d (%s): flags %d, l3 %v; want %d, %v", c.link.Index, c.link.Kind, flags, l3, c.flags, c.l3)
		}
	}
}
