package doctor

import (
	"fmt"
	"net/netip"
)

// mtuOf finds an interface's MTU and kind. mtucheck judges the agent's own
// namespace (namespace=""), so that series is preferred over a pod's
// interface of the same name.
func mtuOf(s Snapshot, iface string) (mtu float64, kind string, ok bool) {
	for _, smp := range s.Samples("netsonde_interface_mtu_bytes", map[string]string{"interface": iface}) {
		if !ok || smp.Label("namespace") == "" {
			mtu, kind, ok = smp.Value, smp.Label("kind"), true
		}
	}
	return
}

func checkMTUMismatch(o Observation, r Rules) []Finding {
	a := r[alertMTUMismatch]
	var out []Finding
	for _, s := range o.After.Samples("netsonde_mtu_mismatch", nil) {
		if !a.Exceeds(s.Value) {
			continue
		}
		iface, reason := s.Label("interface"), s.Label("reason")
		f := r.finding("mtu-mismatch", alertMTUMismatch, iface)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s = 1", SeriesString("netsonde_mtu_mismatch", s.Labels)))
		mtu, kind, haveMTU := mtuOf(o.After, iface)
		name := iface
		if kind != "" {
			name = fmt.Sprintf("%s (%s)", iface, kind)
		}
		if haveMTU {
			f.Evidence = append(f.Evidence, fmt.Sprintf(`netsonde_interface_mtu_bytes{interface=%q} = %s`, iface, num(mtu)))
		}
		exp := o.After.Samples("netsonde_interface_expected_mtu_bytes", map[string]string{"interface": iface})
		expected := ""
		if len(exp) > 0 {
			expected = num(exp[0].Value)
			f.Evidence = append(f.Evidence, fmt.Sprintf(`netsonde_interface_expected_mtu_bytes{interface=%q} = %s`, iface, expected))
		}
		switch reason {
		case "exceeds_underlay":
			f.Summary = fmt.Sprintf("%s: MTU %s leaves no room for encapsulation over its underlay; expected %s", name, num(mtu), expected)
			f.Why = "full-size packets do not fit the underlay once encapsulated: they are dropped or fragmented, TLS handshakes and large responses hang"
		case "exceeds_overlay":
			f.Summary = fmt.Sprintf("%s: MTU %s is above what the overlay carries; expected %s", name, num(mtu), expected)
			f.Why = "pods send packets the overlay cannot carry: large transfers stall while small requests work"
		case "differs_from_cni_config":
			cni := o.After.Samples("netsonde_cni_config_mtu_bytes", nil)
			want := expected
			for _, c := range cni {
				want = num(c.Value)
				f.Evidence = append(f.Evidence, fmt.Sprintf("%s = %s", SeriesString("netsonde_cni_config_mtu_bytes", c.Labels), want))
			}
			f.Summary = fmt.Sprintf("%s: MTU %s differs from the CNI config's %s", name, num(mtu), want)
			f.Why = "the interface was not set up by the CNI config in force: new pods and old ones disagree"
		case "differs_from_peer":
			f.Summary = fmt.Sprintf("%s: MTU %s differs from the other end of the veth pair", name, num(mtu))
			f.Why = "each end sends what the other cannot take: one direction of large packets is dropped"
		case "below_ipv6_minimum":
			f.Summary = fmt.Sprintf("%s: MTU %s is below IPv6's minimum of 1280, so the kernel took IPv6 off it", name, num(mtu))
			f.Why = "its IPv6 addresses and routes are gone with no error anywhere: a dual-stack pod or node reaches nothing over IPv6 through it"
		default:
			f.Summary = fmt.Sprintf("%s: MTU %s does not fit (%s)", name, num(mtu), reason)
			f.Why = "packets of full size are dropped or fragmented"
		}
		f.Next = fmt.Sprintf("ip -d link show %s; compare with the underlay and grep -r mtu /etc/cni/net.d/", iface)
		switch {
		case reason == "below_ipv6_minimum":
			f.Next = fmt.Sprintf("ip -6 addr show dev %s (empty); fix: ip link set %s mtu 1280 or more, then restore its IPv6 addresses (the kernel does not)", iface, iface)
		case expected != "" && reason != "differs_from_peer":
			f.Next = fmt.Sprintf("ip -d link show %s; fix: ip link set %s mtu %s (and the CNI config)", iface, iface, expected)
		}
		out = append(out, f)
	}
	return out
}

// nicMTU is the largest MTU of the node's NICs, as the path-MTU alert
// computes it: kinds device, bond and vlan, loopback excluded (65536 is not
// a NIC's).
func nicMTU(s Snapshot) (float64, string) {
	best, name := 0.0, ""
	for _, smp := range s.Samples("netsonde_interface_mtu_bytes", nil) {
		switch smp.Label("kind") {
		case "device", "bond", "vlan":
		default:
			continue
		}
		if smp.Label("interface") == "lo" {
			continue
		}
		if smp.Value > best {
			best, name = smp.Value, smp.Label("interface")
		}
	}
	return best, name
}

func checkPathMTU(o Observation, r Rules) []Finding {
	var out []Finding
	hole := r[alertPMTUBlackHole]
	for _, s := range o.After.Samples("netsonde_path_mtu_blackhole", nil) {
		if !hole.Exceeds(s.Value) {
			continue
		}
		target := s.Label("target")
		f := r.finding("pmtu-blackhole", alertPMTUBlackHole, target)
		f.Summary = fmt.Sprintf("path-MTU black hole towards %s: large packets vanish, no ICMP comes back", target)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s = 1", SeriesString("netsonde_path_mtu_blackhole", s.Labels)))
		if p := o.After.Samples("netsonde_path_mtu_bytes", map[string]string{"target": target}); len(p) > 0 {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s = %s", SeriesString("netsonde_path_mtu_bytes", p[0].Labels), num(p[0].Value)))
		}
		f.Why = advice["pmtu-blackhole"].Why
		f.Next = fmt.Sprintf("tracepath -n %s (it stalls at the hop that drops); let ICMP type 3 code 4 through, or clamp MSS", target)
		if isIPv6(target) {
			f.Summary = fmt.Sprintf("IPv6 path-MTU black hole towards %s: large packets vanish, no ICMPv6 packet-too-big comes back", target)
			f.Why = "IPv6 routers never fragment: without packet-too-big every packet larger than the path is lost, and TCP connections hang after the handshake"
			f.Next = fmt.Sprintf("tracepath -6 -n %s (it stalls at the hop that drops); look for a rule dropping ICMPv6 packet-too-big (type 2) there: nft list ruleset | grep -i icmpv6; ip6tables -S | grep -i icmpv6; let it through (RFC 4890), or clamp MSS", target)
		}
		out = append(out, f)
	}
	nic, nicName := nicMTU(o.After)
	for _, s := range o.After.Samples("netsonde_path_mtu_bytes", nil) {
		if nic == 0 || s.Value >= nic {
			continue
		}
		target := s.Label("target")
		f := r.finding("path-mtu-below-interface", alertPathMTUBelow, target)
		f.Summary = fmt.Sprintf("path MTU to %s is %s, below the %s bytes %s sends", target, num(s.Value), num(nic), nicName)
		f.Evidence = append(f.Evidence,
			fmt.Sprintf("%s = %s", SeriesString("netsonde_path_mtu_bytes", s.Labels), num(s.Value)),
			fmt.Sprintf(`netsonde_interface_mtu_bytes{interface=%q} = %s`, nicName, num(nic)))
		f.Why = advice["path-mtu-below-interface"].Why
		f.Next = fmt.Sprintf("tracepath -n %s; lower the interface or overlay MTU to %s, or fix the hop", target, num(s.Value))
		if isIPv6(target) {
			f.Why = "this works only while ICMPv6 packet-too-big gets through every firewall on the path (IPv6 routers never fragment)"
			f.Next = fmt.Sprintf("tracepath -6 -n %s; lower the interface or overlay MTU to %s, or fix the hop", target, num(s.Value))
		}
		out = append(out, f)
	}
	return out
}

// isIPv6 says whether a target label is an IPv6 address.
func isIPv6(target string) bool {
	a, err := netip.ParseAddr(target)
	return err == nil && a.Is6() && !a.Is4In6()
}
