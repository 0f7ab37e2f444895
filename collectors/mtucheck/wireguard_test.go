package mtucheck

import (
	"errors"
	"net"
	"reflect"
	"testing"

	"github.com/netsonde/netsonde/internal/hostview"
)

// TestWireGuardFit: a WireGuard device's limit is its tightest peer's,
// each peer's underlay (the route to its endpoint) less 60 bytes for an
// IPv4 endpoint and 80 for an IPv6 one; a device with no endpoint, or
// none routed to a device of the namespace, is not judged.
func TestWireGuardFit(t *testing.T) {
	eth0 := hostview.Link{Index: 2, Name: "eth0", Kind: "device", MTU: 1500}
	eth1 := hostview.Link{Index: 3, Name: "eth1", Kind: "device", MTU: 9000}
	v4, v6 := net.ParseIP("198.18.70.2").To4(), net.ParseIP("fd00:5e::70:2")
	v6far, v4lost := net.ParseIP("fd00:5e::71:2"), net.ParseIP("198.18.71.2").To4()
	route := func(dst net.IP) int {
		switch {
		case dst.Equal(v4), dst.Equal(v6):
			return eth0.Index
		case dst.Equal(v6far):
			return eth1.Index
		}
		return 0 // v4lost: no route; nil: no default route
	}
	for _, tc := range []struct {
		name      string
		mtu       int
		endpoints []net.IP // nil: the device was not read
		read      bool
		expected  int // 0: no verdict
		mismatch  bool
	}{
		{name: "one IPv4 peer", mtu: 1440, endpoints: []net.IP{v4}, read: true, expected: 1440},
		{name: "one IPv4 peer, too large", mtu: 1450, endpoints: []net.IP{v4}, read: true, expected: 1440, mismatch: true},
		{name: "one IPv6 peer at IPv4's 1,440", mtu: 1440, endpoints: []net.IP{v6}, read: true, expected: 1420, mismatch: true},
		{name: "one IPv6 peer at 1,420", mtu: 1420, endpoints: []net.IP{v6}, read: true, expected: 1420},
		{name: "an IPv6 peer among IPv4 ones", mtu: 1440, endpoints: []net.IP{v4, v6, v4}, read: true, expected: 1420, mismatch: true},
		{name: "an IPv6 peer over jumbo frames, an IPv4 one over 1,500", mtu: 1440, endpoints: []net.IP{v6far, v4}, read: true, expected: 1440},
		{name: "a peer without endpoint says nothing", mtu: 1420, endpoints: []net.IP{nil, v6, net.IPv6unspecified}, read: true, expected: 1420},
		{name: "no endpoint: not judged", mtu: 9000, endpoints: []net.IP{nil}, read: true},
		{name: "no peer: not judged", mtu: 9000, endpoints: []net.IP{}, read: true},
		{name: "endpoint not routed here: not judged", mtu: 9000, endpoints: []net.IP{v4lost}, read: true},
		{name: "device not read: not judged", mtu: 9000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wg := hostview.Link{Index: 9, Name: "wg0", Kind: "wireguard", MTU: tc.mtu}
			f := facts{}
			if tc.read {
				f.wgEndpoints = map[int][]net.IP{wg.Index: tc.endpoints}
			}
			got := check([]hostview.Link{eth0, eth1, wg}, route, f, func(hostview.Link) (int, bool) { return 0, false })
			var want []verdict
			if tc.expected > 0 {
				want = []verdict{{iface: "wg0", expected: tc.expected, reasons: of(map[int]bool{reasonExceedsUnderlay: tc.mismatch})}}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("verdicts %+v, want %+v", got, want)
			}
		})
	}
}

// TestWireGuardOverlayFit: a pod's veth must fit through the WireGuard
// device too, and the WireGuard's underlay is no pod interface even when
// it is a veth.
func TestWireGuardOverlayFit(t *testing.T) {
	u := hostview.Link{Index: 2, Name: "u0", Kind: "veth", MTU: 1500}
	wg := hostview.Link{Index: 3, Name: "wg0", Kind: "wireguard", MTU: 1420}
	pod := hostview.Link{Index: 4, Name: "veth1", Kind: "veth", MTU: 1440}
	ep := net.ParseIP("fd00:5e::70:2")
	route := func(dst net.IP) int {
		if dst.Equal(ep) {
			return u.Index
		}
		return 0
	}
	got := check([]hostview.Link{u, wg, pod}, route, facts{wgEndpoints: map[int][]net.IP{wg.Index: {ep}}}, func(hostview.Link) (int, bool) { return 0, false })
	want := []verdict{
		{iface: "veth1", expected: 1420, reasons: of(map[int]bool{reasonExceedsOverlay: true})},
		{iface: "wg0", expected: 1420, reasons: of(map[int]bool{reasonExceedsUnderlay: false})},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("verdicts %+v, want %+v", got, want)
	}
}

// TestReadWireGuard: only wireguard links are read; one that fails is
// left out (not judged) and its error named.
func TestReadWireGuard(t *testing.T) {
	ep := net.ParseIP("fd00:5e::70:2")
	links := []hostview.Link{
		{Index: 2, Name: "eth0", Kind: "device"},
		{Index: 3, Name: "wg0", Kind: "wireguard"},
		{Index: 4, Name: "wg1", Kind: "wireguard"},
	}
	var asked []string
	eps, errs := readWireGuard(links, func(name string) ([]net.IP, error) {
		asked = append(asked, name)
		if name == "wg1" {
			return nil, errors.New("operation not permitted")
		}
		return []net.IP{ep}, nil
	})
	if !reflect.DeepEqual(asked, []string{"wg0", "wg1"}) {
		t.Errorf("read %v, want wg0 and wg1", asked)
	}
	if !reflect.DeepEqual(eps, map[int][]net.IP{3: {ep}}) {
		t.Errorf("endpoints %v, want wg0's (index 3) only", eps)
	}
	if len(errs) != 1 || errs["wg1"] == nil {
		t.Errorf("errors %v, want wg1's", errs)
	}
}

// of makes reasons from pairs of reason and mismatch.
func of(pairs map[int]bool) reasons {
	var r reasons
	for reason, bad := range pairs {
		r.put(reason, bad)
	}
	return r
}
