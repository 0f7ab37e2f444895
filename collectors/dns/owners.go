package dns

import (
	"strconv"

	"github.com/netsonde/netsonde/internal/hostview"
)

type pod struct{ namespace, name string }

// keyPod attributes a flow key's owner: an interface with the TC hook,
// a network namespace with the cgroup one. ok false: not known yet (a
// pod's veth whose namespace the host view has not read): its counts wait
// in the kernel rather than show under the wrong pod.
func (c *collector) keyPod(key uint64) (pod, bool) {
	if !c.tc {
		return c.podOf(key), true
	}
	return c.ifaceOwner(key)
}

// ifaceOwner attributes an interface (the TC hook's keys): 0, the node's
// own sockets, is the empty pod; a pod's veth is its pod, found through
// the host view, and remembered, as the veth may go before its counts are
// read; a veth whose namespace the view knows and no pod owns is the
// empty pod, for now (the pod index may learn of it later).
func (c *collector) ifaceOwner(ifindex uint64) (pod, bool) {
	if ifindex == 0 {
		return pod{}, true
	}
	c.mu.Lock()
	p, ok := c.ifacePod[ifindex]
	c.mu.Unlock()
	if ok {
		return p, true
	}
	if c.deps.Net == nil {
		return pod{}, true
	}
	var ns *hostview.Namespace
	if l, ok := c.deps.Net.ByIndex(int(ifindex)); ok && l.NetNsID >= 0 {
		ns, _ = c.deps.Net.Snapshot().ByNsID(l.NetNsID)
	}
	switch {
	case c.testNetns && ns != nil:
		p = pod{"netns", strconv.FormatUint(ns.Cookie, 10)}
	case c.testNetns:
		return pod{}, false
	case c.deps.Pods != nil:
		cp, found := c.deps.Pods.ByHostInterface(int(ifindex))
		if !found {
			return pod{}, ns != nil
		}
		p = pod{cp.Namespace, cp.Name}
	default:
		return pod{}, true
	}
	c.mu.Lock()
	c.ifacePod[ifindex] = p
	c.mu.Unlock()
	return p, true
}

// podOf attributes a network namespace: the agent's own (the host's, for
// a DaemonSet with hostNetwork) and unknown ones are the empty pod.
func (c *collector) podOf(netns uint64) pod {
	if netns == 0 || netns == c.own {
		return pod{}
	}
	if c.testNetns {
		return pod{"netns", strconv.FormatUint(netns, 10)}
	}
	if c.deps.Pods == nil {
		return pod{}
	}
	p, ok := c.deps.Pods.ByNetns(netns)
	if !ok {
		return pod{}
	}
	return pod{p.Namespace, p.Name}
}
