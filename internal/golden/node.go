package golden

import (
	"net/netip"
	"time"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/cluster"
)

// The fixture node: the agent's namespace and two others, one a pod's.
const (
	// OwnNetns is the agent's (the host's) namespace.
	OwnNetns uint64 = 4026531840
	// PodNetns is pod shop/web-0's namespace: its eth0 (ifindex 3) is the
	// peer of the host's veth1a2b3c (ifindex 5).
	PodNetns uint64 = 4026532500
	// OtherNetns is a namespace no pod owns (`ip netns add`): its eth0
	// (ifindex 3) is the peer of the host's veth4d5e6f (ifindex 6).
	OtherNetns uint64 = 4026532600
	// UnknownNetns is a namespace the view has not met.
	UnknownNetns uint64 = 4026532999
)

// Host-side ifindexes of the fixture node.
const (
	IfLo        = 1
	IfEth0      = 2
	IfFlannel   = 3
	IfCNI0      = 4
	IfPodVeth   = 5
	IfOtherVeth = 6
	// IfGone is an ifindex no link has.
	IfGone = 42
	// IfNsEth0 is eth0's ifindex inside PodNetns and OtherNetns.
	IfNsEth0 = 3
)

// Addresses of the fixture node.
var (
	PodAddr   = netip.MustParseAddr("10.244.1.7")
	OtherAddr = netip.MustParseAddr("10.244.1.9")
	PeerNode  = cluster.Node{Name: "node-b", InternalIP: netip.MustParseAddr("192.168.1.12"), OverlayIP: netip.MustParseAddr("10.244.2.0")}
	// WebPod is the pod at PodAddr.
	WebPod = cluster.Pod{Namespace: "shop", Name: "web-0"}
)

// Links are the agent's namespace's links on the fixture node.
func Links() []hostnet.Link {
	return []hostnet.Link{
		{Index: IfLo, Name: "lo", Kind: "device", MTU: 65536, NetNsID: -1, Up: true},
		{Index: IfEth0, Name: "eth0", Kind: "device", MTU: 1500, NetNsID: -1, Up: true},
		{Index: IfFlannel, Name: "flannel.1", Kind: "vxlan", MTU: 1450, ParentIndex: IfEth0, NetNsID: -1, Up: true},
		{Index: IfCNI0, Name: "cni0", Kind: "bridge", MTU: 1450, NetNsID: -1, Up: true},
		{Index: IfPodVeth, Name: "veth1a2b3c", Kind: "veth", MTU: 1450, ParentIndex: IfNsEth0, MasterIndex: IfCNI0, NetNsID: 0, Up: true},
		{Index: IfOtherVeth, Name: "veth4d5e6f", Kind: "veth", MTU: 1500, ParentIndex: IfNsEth0, NetNsID: 1, Up: true},
	}
}

// Namespaces are the node's other namespaces.
func Namespaces() []hostnet.Namespace {
	ns := func(inode uint64, nsid, eth0MTU, peer int, addr netip.Addr) hostnet.Namespace {
		return hostnet.Namespace{Inode: inode, Inspection: hostnet.Inspection{NsID: nsid, Addrs: []netip.Addr{addr},
			Links: map[int]hostnet.NsLink{
				1:        {Name: "lo", MTU: 65536, Kind: "device"},
				IfNsEth0: {Name: "eth0", MTU: eth0MTU, Kind: "veth", PeerIndex: peer},
			}}}
	}
	return []hostnet.Namespace{
		ns(PodNetns, 0, 1450, IfPodVeth, PodAddr),
		ns(OtherNetns, 1, 1400, IfOtherVeth, OtherAddr),
	}
}

// podIndex knows one pod and one other node.
type podIndex struct{}

func (podIndex) ByIP(a netip.Addr) (cluster.Pod, bool) { return WebPod, a == PodAddr }
func (podIndex) PeerNodes(int) []cluster.Node          { return []cluster.Node{PeerNode} }

// PodIndex is the fixture's pod index (WebPod at PodAddr), for a test
// that builds its own view of the fixture's namespaces.
func PodIndex() hostnet.PodIndex { return podIndex{} }

// Node is the fixture node's view, with extra links if given: Deps.Net,
// and Deps.Pods as the agent gives it (pods joined by address).
func Node(extra ...hostnet.Link) *hostnet.View {
	return hostnet.Fixed(OwnNetns, append(Links(), extra...), podIndex{}, Namespaces()...)
}

// Clock is a clock stopped at Now.
type Clock struct{ T time.Time }

// Now implements collectors.Clock.
func (c *Clock) Now() time.Time { return c.T }

// Now is the fixture's time.
var Now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
