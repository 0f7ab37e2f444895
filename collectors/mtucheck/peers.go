package mtucheck

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/linkwatch"
	"github.com/netsonde/netsonde/netnsnames"
)

// peerMTUs keeps the MTU of the far end of every veth of the agent's
// namespace whose peer lives in another namespace (a pod's eth0), read in
// the background: a veth whose two ends differ drops or fragments what the
// larger end sends. The far end's changes raise no event here, so the view
// is refreshed every interval.
type peerMTUs struct {
	links    *linkwatch.Watcher
	procPath string
	every    time.Duration

	mu  sync.RWMutex
	mtu map[int]int // host-side ifindex -> peer's MTU
}

func (p *peerMTUs) run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.refresh()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *peerMTUs) refresh() {
	want := map[int][]linkwatch.Link{} // peer nsid -> host-side veths
	for _, l := range p.links.Links() {
		if l.Kind == "veth" && l.NetNsID >= 0 && l.ParentIndex > 0 {
			want[l.NetNsID] = append(want[l.NetNsID], l)
		}
	}
	out := map[int]int{}
	if len(want) > 0 {
		// Which namespace is each nsid? Ask the kernel for the id it gave
		// each namespace found on the node, until all are known.
		for _, path := range netnsnames.List(p.procPath, []string{"/run/netns", "/var/run/netns"}) {
			if len(want) == 0 {
				break
			}
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			id, err := netlink.GetNetNsIdByFd(int(f.Fd()))
			f.Close()
			veths, ok := want[id]
			if err != nil || !ok {
				continue
			}
			delete(want, id)
			p.read(path, veths, out)
		}
	}
	p.mu.Lock()
	p.mtu = out
	p.mu.Unlock()
}

// read looks up, in the namespace at path, the peers of veths by index
// (a veth's IFLA_LINK is its peer's index in the peer's namespace).
func (p *peerMTUs) read(path string, veths []linkwatch.Link, out map[int]int) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE) // route only: NETLINK_XFRM needs xfrm_user, often a module not loaded
	if err != nil {
		return
	}
	defer nl.Close()
	for _, v := range veths {
		if peer, err := nl.LinkByIndex(v.ParentIndex); err == nil {
			out[v.Index] = peer.Attrs().MTU
		}
	}
}

// of returns the MTU of the peer of host-side veth ifindex.
func (p *peerMTUs) of(ifindex int) (int, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	m, ok := p.mtu[ifindex]
	return m, ok
}
