// Package hostview holds what agent/hostnet's view of the host's network
// publishes and collectors read: links, the node's other network
// namespaces and the snapshot that joins them with pods. It is plain data
// and reads nothing of the kernel beyond a namespace file's inode and the
// calling thread's namespace cookie, so the
// collectors framework can name these types without importing agent/
// (DESIGN, layering: the framework imports nothing of agent/).
package hostview

import (
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/internal/procnet"
)

// Link is what netsonde knows about one interface.
type Link struct {
	Index int
	Name  string
	// Kind is netlink's IFLA_INFO_KIND (veth, vxlan, geneve, wireguard,
	// bridge, ...) or "device" for a link without one (physical NICs, lo).
	Kind        string
	MTU         int
	ParentIndex int // the lower device, for vlan/macvlan/ipvlan (0 if none)
	MasterIndex int // the bridge or bond it is enslaved to (0 if none)
	// NetNsID is the peer's namespace id for veths, -1 if unknown.
	NetNsID int
	Up      bool
	// Attrs is the full netlink view, for collectors that need more (the
	// underlay of a vxlan, for instance). Treat it as read-only.
	Attrs netlink.Link
}

// NsLink is an interface of another namespace, as one dump saw it.
type NsLink struct {
	Name string
	MTU  int
	// Kind as in Link ("veth", "device", ...).
	Kind string
	// PeerIndex is a veth's IFLA_LINK: its peer's ifindex in the peer's
	// namespace (for a pod's eth0, the host end); 0 if none.
	PeerIndex int
}

// Inspection is what one look into a namespace found.
type Inspection struct {
	// Cookie is the namespace's cookie (SO_NETNS_COOKIE, net->net_cookie
	// in the kernel): what the view and the BPF programs know it by.
	Cookie uint64
	// NsID is the id the agent's namespace gave this one (what a host-side
	// veth's NetNsID names), -1 when none was given.
	NsID  int
	Links map[int]NsLink
	Addrs []netip.Addr
}

// Inode returns the inode of a namespace file (e.g. /proc/PID/ns/net):
// how the walk finds namespaces (net->ns.inum in the kernel). Not what
// counts are keyed by: a new namespace gets a freed inode back at once.
func Inode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

// OwnInode is the inode of the calling thread's network namespace.
func OwnInode() (uint64, error) { return Inode("/proc/thread-self/ns/net") }

// OwnCookie is the cookie of the calling thread's network namespace (the
// agent's: its threads all stay there unless locked elsewhere), read
// through a socket made there (a Unix one: every kernel has it, it needs
// no module and no address; SO_NETNS_COOKIE is Linux 5.14+). Unlike the
// inode, a cookie is never given to another namespace while the node
// runs, so counts keyed by it never pass from a vanished pod to a new one.
func OwnCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket for the namespace cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("getsockopt SO_NETNS_COOKIE (Linux 5.14+): %w", err)
	}
	return c, nil
}

// Namespace is another network namespace of the node, as last read. The
// view and the BPF programs know it by its cookie (Inspection.Cookie); its
// inode finds it on the walk and names it to people, but a namespace made
// after it was freed gets it back at once.
type Namespace struct {
	Inode uint64
	// Path opens it (a pin under /run/netns, or /proc/PID/ns/net).
	Path string
	Inspection
	// Read is when it was last read.
	Read time.Time
	// Counters are the namespace's own socket and protocol counters
	// (netstat, snmp, snmp6) a collector asked for with WantCounters, as
	// of Read; nil when none were asked for, empty when they could not
	// be read.
	Counters procnet.Counters
}

// State of a namespace in a snapshot.
type State int

const (
	// Unknown: the view has not met it (yet); Miss asks it to look.
	Unknown State = iota
	// Present: found by the last walk.
	Present
	// Gone: found before, or asked for, and not found since Since.
	Gone
)

// Snapshot is the view at one moment. It is never modified once published:
// read it freely, from any goroutine, without locks.
type Snapshot struct {
	Taken time.Time
	// The fields below are filled by the view that publishes the
	// snapshot (agent/hostnet) and never written after; readers use the
	// methods.
	// OwnCookie is the agent's namespace's cookie. ByCookie, GoneSince
	// and PodByNetns are by cookie; ByIno is the walk's key, for the
	// next refresh to find what it read before.
	OwnCookie uint64
	ByCookie  map[uint64]*Namespace
	ByIno     map[uint64]*Namespace
	NsIDs     map[int]*Namespace
	GoneSince map[uint64]time.Time
	// pods joined by address: namespace cookie and host-side veth ifindex.
	PodByNetns map[uint64]cluster.Pod
	PodByIface map[int]cluster.Pod
}

// Own is the cookie of the agent's namespace.
func (s *Snapshot) Own() uint64 { return s.OwnCookie }

// Lookup returns a namespace by cookie, its state, and since when it is
// gone (zero unless Gone).
func (s *Snapshot) Lookup(cookie uint64) (*Namespace, State, time.Time) {
	if n, ok := s.ByCookie[cookie]; ok {
		return n, Present, time.Time{}
	}
	if since, ok := s.GoneSince[cookie]; ok {
		return nil, Gone, since
	}
	return nil, Unknown, time.Time{}
}

// Namespaces returns every namespace present (not the agent's own), by
// cookie.
func (s *Snapshot) Namespaces() map[uint64]*Namespace { return s.ByCookie }

// ByNsID returns the namespace the agent's namespace knows by this nsid
// (a host-side veth's NetNsID).
func (s *Snapshot) ByNsID(id int) (*Namespace, bool) {
	n, ok := s.NsIDs[id]
	return n, ok
}

// PeerMTU returns the MTU of the far end of a host-side veth whose peer
// lives in another namespace (a pod's eth0).
func (s *Snapshot) PeerMTU(l Link) (int, bool) {
	if l.Kind != "veth" || l.NetNsID < 0 || l.ParentIndex <= 0 {
		return 0, false
	}
	n, ok := s.NsIDs[l.NetNsID]
	if !ok {
		return 0, false
	}
	peer, ok := n.Links[l.ParentIndex]
	return peer.MTU, ok
}

// ByNetns returns the pod whose namespace has this cookie.
func (s *Snapshot) ByNetns(cookie uint64) (cluster.Pod, bool) {
	p, ok := s.PodByNetns[cookie]
	return p, ok
}

// ByHostInterface returns the pod behind a host-side veth.
func (s *Snapshot) ByHostInterface(ifindex int) (cluster.Pod, bool) {
	p, ok := s.PodByIface[ifindex]
	return p, ok
}

// Attributed counts the pods whose namespace was found.
func (s *Snapshot) Attributed() int { return len(s.PodByNetns) }
