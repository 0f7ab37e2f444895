package doctor

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// Alert names doctor judges with (deploy/prometheus/rules.yml).
const (
	alertConntrackFilling  = "NetsondeConntrackTableFilling"
	alertConntrackFull     = "NetsondeConntrackTableFull"
	alertConntrackDropping = "NetsondeConntrackDroppingPackets"
	alertConntrackInsert   = "NetsondeConntrackInsertFailed"
	alertConntrackEarly    = "NetsondeConntrackEarlyDrop"
	alertMTUMismatch       = "NetsondeMTUMismatch"
	alertPathMTUBelow      = "NetsondePathMTUBelowInterfaceMTU"
	alertPMTUBlackHole     = "NetsondePMTUBlackHole"
	alertDiskFsync         = "NetsondeDiskFsyncSlow"
	alertProcessFsync      = "NetsondeProcessFsyncSlow"
	alertDrops             = "NetsondePacketDropsHigh"
	alertRetransmits       = "NetsondeTCPRetransmitsHigh"
	alertConnectRetries    = "NetsondeTCPConnectRetries"
	alertCollectorDown     = "NetsondeCollectorDown"
)

// Checks lists every diagnosis doctor runs, in the order their findings
// are listed within one severity.
func Checks() []Check {
	return []Check{
		{Name: "mtu", Alerts: []string{alertMTUMismatch}, Run: checkMTUMismatch},
		{Name: "pmtu", Alerts: []string{alertPMTUBlackHole}, VectorAlerts: []string{alertPathMTUBelow}, Run: checkPathMTU},
		{Name: "conntrack-fill", Alerts: []string{alertConntrackFull, alertConntrackFilling}, Run: checkConntrackFill},
		{Name: "conntrack-events", Alerts: []string{alertConntrackDropping, alertConntrackInsert, alertConntrackEarly}, Run: checkConntrackEvents},
		{Name: "drops", Alerts: []string{alertDrops}, Run: checkDrops},
		{Name: "tcp", Alerts: []string{alertRetransmits, alertConnectRetries}, Run: checkRetransmits},
		{Name: "tcp-connects", Alerts: []string{alertConnectFailures}, Run: checkConnects},
		{Name: "mesh", VectorAlerts: []string{alertMeshPathFailing}, Run: checkMesh},
		{Name: "dns", Alerts: []string{alertDNSTimeouts}, Run: checkDNS},
		{Name: "sockets", Alerts: []string{alertListenOverflows, alertUDPErrors, alertTCPMemory, alertPortsExhausted}, Run: checkSockets},
		{Name: "neighbour", Alerts: []string{alertNeighbourFull}, Run: checkNeighbour},
		{Name: "qdisc", Alerts: []string{alertQdiscDrops}, Run: checkQdisc},
		{Name: "fsync", Alerts: []string{alertDiskFsync, alertProcessFsync}, Run: checkFsync},
		{Name: "collectors", Alerts: []string{alertCollectorDown}, Run: checkCollectors},
	}
}

// perRange converts an increase seen over the run into the alert's own
// unit: an increase over the alert's range (increase(x[5m]) > 10), at the
// rate doctor saw. A 10-second run cannot wait five minutes; it can say
// whether the rate it saw, kept up, would cross the line.
func perRange(o Observation, increase float64, rng time.Duration) float64 {
	return o.Rate(increase) * rng.Seconds()
}

// num prints a count as a count (4000, not 4e+03) and anything else with
// four significant digits.
func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.4g", v)
}

// --- conntrack -------------------------------------------------------------

func checkConntrackFill(o Observation, r Rules) []Finding {
	entries := o.After.Samples("netsonde_conntrack_entries", nil)
	limits := o.After.Samples("netsonde_conntrack_entries_limit", nil)
	if len(entries) != 1 || len(limits) != 1 || limits[0].Value <= 0 {
		return nil
	}
	e, l := entries[0].Value, limits[0].Value
	ratio := e / l
	var alert string
	switch {
	case r[alertConntrackFull].Exceeds(ratio):
		alert = alertConntrackFull
	case r[alertConntrackFilling].Exceeds(ratio):
		alert = alertConntrackFilling
	default:
		return nil
	}
	f := r.finding("conntrack-fill", alert, "nf_conntrack")
	f.Summary = fmt.Sprintf("conntrack table is %.0f%% full (%s of %s entries)", ratio*100, num(e), num(l))
	f.Evidence = append(f.Evidence,
		fmt.Sprintf("netsonde_conntrack_entries = %s", num(e)),
		fmt.Sprintf("netsonde_conntrack_entries_limit = %s (net.netfilter.nf_conntrack_max)", num(l)),
		fmt.Sprintf("fill %.3f %s %s (%s)", ratio, r[alert].Op, num(r[alert].Threshold), alert))
	f.Why, f.Next = advice["conntrack-fill"].Why, advice["conntrack-fill"].Next
	return []Finding{f}
}

func checkConntrackEvents(o Observation, r Rules) []Finding {
	if o.After["netsonde_conntrack_events_total"] == nil {
		return nil
	}
	var out []Finding
	for _, c := range []struct {
		event, alert, id, what, noun string
	}{
		{"drop", alertConntrackDropping, "conntrack-drop", "conntrack dropped %s in %.1fs", "packet"},
		{"insert_failed", alertConntrackInsert, "conntrack-insert-failed", "conntrack failed %s in %.1fs", "insert"},
		{"early_drop", alertConntrackEarly, "conntrack-early-drop", "conntrack evicted %s in %.1fs to make room", "entry"},
	} {
		inc := o.Increase("netsonde_conntrack_events_total", map[string]string{"event": c.event})
		a := r[c.alert]
		per := perRange(o, inc, a.Range)
		if inc == 0 || !a.Exceeds(per) {
			continue
		}
		f := r.finding(c.id, c.alert, c.event)
		f.Summary = fmt.Sprintf(c.what, counted(inc, c.noun), o.Elapsed)
		f.Evidence = append(f.Evidence,
			fmt.Sprintf(`netsonde_conntrack_events_total{event=%q} +%s in %.1fs`, c.event, num(inc), o.Elapsed),
			fmt.Sprintf("= %s per %s at this rate %s %s (%s)", num(per), fmtRange(a.Range), a.Op, num(a.Threshold), c.alert))
		f.Why, f.Next = advice[c.id].Why, advice[c.id].Next
		out = append(out, f)
	}
	return out
}

// counted prints a count with its noun: "1 packet", "200 packets",
// "3 entries".
func counted(v float64, noun string) string {
	if v == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return num(v) + " " + strings.TrimSuffix(noun, "y") + "ies"
	}
	return num(v) + " " + noun + "s"
}

// fmtRange prints a duration as PromQL writes it: 5m, not 5m0s.
func fmtRange(d time.Duration) string { return model.Duration(d).String() }

// --- MTU -------------------------------------------------------------------

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

// --- packets ---------------------------------------------------------------

// place names where packets were counted: an interface, and the pod behind
// it when there is one. Packets freed by a socket (TCP_ABORT_ON_DATA,
// QUEUE_PURGE) have no interface.
func place(l map[string]string) string {
	var b strings.Builder
	if l["interface"] != "" {
		fmt.Fprintf(&b, "on interface %s", l["interface"])
	} else {
		b.WriteString("with no interface")
	}
	if l["pod"] != "" {
		fmt.Fprintf(&b, ", pod %s/%s", l["namespace"], l["pod"])
	}
	return b.String()
}

// topPlaces sums increases by interface and pod, largest first.
func topPlaces(ds []Delta, n int) []string {
	sums := map[string]float64{}
	for _, d := range ds {
		sums[place(d.Labels)] += d.Increase
	}
	return top(sums, n, "%s %s")
}

// top lists the n largest non-zero sums, largest first (ties by name), as
// format(sum, name), and one line for what is left.
func top(sums map[string]float64, n int, format string) []string {
	names := make([]string, 0, len(sums))
	for k, v := range sums {
		if v > 0 {
			names = append(names, k)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if sums[names[i]] != sums[names[j]] {
			return sums[names[i]] > sums[names[j]]
		}
		return names[i] < names[j]
	})
	var out []string
	var rest float64
	for i, k := range names {
		if i < n {
			out = append(out, fmt.Sprintf(format, num(sums[k]), k))
		} else {
			rest += sums[k]
		}
	}
	if rest > 0 {
		out = append(out, fmt.Sprintf("%s more elsewhere", num(rest)))
	}
	return out
}

// dropNext is the first command for the commonest drop reasons.
var dropNext = map[string]string{
	"NETFILTER_DROP":       "nft list ruleset (and iptables-save): find the rule that drops, and the policy behind it",
	"NO_SOCKET":            "ss -lnup / ss -lntp in that namespace: nothing listens on the port the packets are for",
	"PKT_TOO_BIG":          "ip -d link show; tracepath -n <peer>: an MTU does not fit",
	"TCP_INVALID_SEQUENCE": "conntrack -S and ss -ti: a middlebox or an asymmetric route breaks sequence numbers",
	"SOCKET_RCVBUFF":       "ss -lump: the receiver does not read fast enough (rcvbuf full)",
	"QDISC_DROP":           "tc -s qdisc show: a queue overflows",
	"IP_RPFILTER":          "sysctl net.ipv4.conf.all.rp_filter: reverse-path filtering refuses the source",
	"OTHERHOST":            "packets for another MAC: usually harmless on a bridge",
}

// captureCommand is the `netsonde capture` that shows the packets of the
// place that dropped most with reason: which peers, which ports.
func captureCommand(reason string, ds []Delta) string {
	var top Delta
	for _, d := range ds {
		if d.Increase > top.Increase {
			top = d
		}
	}
	cmd := "netsonde capture --reason " + reason
	switch {
	case top.Labels["pod"] != "":
		cmd += " --pod " + top.Labels["namespace"] + "/" + top.Labels["pod"]
	case top.Labels["interface"] != "":
		cmd += " --interface " + top.Labels["interface"]
	}
	return cmd + " --count 20"
}

func checkDrops(o Observation, r Rules) []Finding {
	ds := o.Deltas("netsonde_packet_drops_total", nil)
	byReason := map[string][]Delta{}
	totals := map[string]float64{}
	for _, d := range ds {
		byReason[d.Labels["reason"]] = append(byReason[d.Labels["reason"]], d)
		totals[d.Labels["reason"]] += d.Increase
	}
	reasons := make([]string, 0, len(totals))
	for reason, t := range totals {
		if t > 0 {
			reasons = append(reasons, reason)
		}
	}
	sort.Slice(reasons, func(i, j int) bool {
		if totals[reasons[i]] != totals[reasons[j]] {
			return totals[reasons[i]] > totals[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	a := r[alertDrops]
	var out []Finding
	for _, reason := range reasons {
		total := totals[reason]
		rate := o.Rate(total)
		f := r.finding("packet-drops", alertDrops, reason)
		// Below the alert's rate the kernel's normal churn and a real
		// problem look alike; doctor still shows them, as info, because
		// "what was dropped during these seconds" is the question asked.
		if !a.Exceeds(rate) {
			f.Severity = Info
		}
		f.Summary = fmt.Sprintf("%s dropped with reason %s in %.1fs (%.1f/s)", counted(total, "packet"), reason, o.Elapsed, rate)
		f.Evidence = append(f.Evidence, topPlaces(byReason[reason], 5)...)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%.1f/s; %s fires at %s %s/s for %s", rate, alertDrops, a.Op, num(a.Threshold), fmtRange(a.For)))
		f.Why = advice["packet-drops"].Why
		then := dropNext[reason]
		if then == "" {
			then = fmt.Sprintf(`sum by (interface, namespace, pod) (rate(netsonde_packet_drops_total{reason=%q}[5m]))`, reason)
		}
		f.Next = captureCommand(reason, byReason[reason]) + "; then " + then

		out = append(out, f)
	}
	return out
}

func checkRetransmits(o Observation, r Rules) []Finding {
	var out []Finding
	for _, c := range []struct {
		state, alert, id, what, noun string
	}{
		{"ESTABLISHED", alertRetransmits, "tcp-retransmits",
			"TCP retransmitted %s of established connections in %.1fs (%.1f/s)", "segment"},
		{"SYN_SENT", alertConnectRetries, "tcp-connect-retries",
			"TCP resent %s in %.1fs (%.1f/s): connection attempts go unanswered", "SYN"},
	} {
		ds := o.Deltas("netsonde_tcp_retransmits_total", map[string]string{"state": c.state})
		var inc float64
		for _, d := range ds {
			inc += d.Increase
		}
		a := r[c.alert]
		rate := o.Rate(inc)
		if inc == 0 || !a.Exceeds(rate) {
			continue
		}
		f := r.finding(c.id, c.alert, c.state)
		f.Summary = fmt.Sprintf(c.what, counted(inc, c.noun), o.Elapsed, rate)
		f.Evidence = append(f.Evidence, topPods(ds, 5)...)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%.1f/s %s %s/s (%s)", rate, a.Op, num(a.Threshold), c.alert))
		f.Why, f.Next = advice[c.id].Why, advice[c.id].Next
		out = append(out, f)
	}
	return out
}

// topPods sums increases by pod (the host's own sockets as "the host"),
// largest first.
func topPods(ds []Delta, n int) []string {
	sums := map[string]float64{}
	for _, d := range ds {
		who := "the host"
		if d.Labels["pod"] != "" {
			who = "pod " + d.Labels["namespace"] + "/" + d.Labels["pod"]
		}
		sums[who] += d.Increase
	}
	return top(sums, n, "%s from %s")
}

// --- fsync -----------------------------------------------------------------

// bucketDelta is a histogram's buckets over the run: the second scrape's
// cumulative counts minus the first's.
type bucket struct {
	upper float64
	count float64 // cumulative
}

func histogramDelta(after *dto.Metric, before *dto.Metric) (buckets []bucket, count float64) {
	h := after.GetHistogram()
	if h == nil {
		return nil, 0
	}
	prev := map[float64]float64{}
	var prevCount float64
	if before != nil && before.GetHistogram() != nil {
		for _, b := range before.GetHistogram().GetBucket() {
			prev[b.GetUpperBound()] = float64(b.GetCumulativeCount())
		}
		prevCount = float64(before.GetHistogram().GetSampleCount())
	}
	count = float64(h.GetSampleCount()) - prevCount
	if count < 0 { // the agent restarted between the scrapes
		prev, count = map[float64]float64{}, float64(h.GetSampleCount())
	}
	for _, b := range h.GetBucket() {
		buckets = append(buckets, bucket{b.GetUpperBound(), float64(b.GetCumulativeCount()) - prev[b.GetUpperBound()]})
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].upper < buckets[j].upper })
	if len(buckets) == 0 || !math.IsInf(buckets[len(buckets)-1].upper, 1) {
		buckets = append(buckets, bucket{math.Inf(1), count})
	}
	return buckets, count
}

// quantile is Prometheus' histogram_quantile over classic buckets: linear
// interpolation inside the bucket holding the rank, the last finite bound
// when the rank falls in +Inf.
func quantile(q float64, buckets []bucket, count float64) float64 {
	if count <= 0 || len(buckets) == 0 {
		return math.NaN()
	}
	rank := q * count
	i := sort.Search(len(buckets), func(i int) bool { return buckets[i].count >= rank })
	if i == len(buckets) {
		i = len(buckets) - 1
	}
	if math.IsInf(buckets[i].upper, 1) {
		if i == 0 {
			return math.NaN()
		}
		return buckets[i-1].upper
	}
	start, below := 0.0, 0.0
	if i > 0 {
		start, below = buckets[i-1].upper, buckets[i-1].count
	} else if buckets[0].upper <= 0 {
		return buckets[0].upper
	}
	in := buckets[i].count - below
	if in <= 0 {
		return buckets[i].upper
	}
	return start + (buckets[i].upper-start)*(rank-below)/in
}

func checkFsync(o Observation, r Rules) []Finding {
	var out []Finding
	for _, c := range []struct {
		metric, alert, id string
		labels            []string
	}{
		{"netsonde_disk_fsync_duration_seconds", alertDiskFsync, "disk-fsync-slow", []string{"path"}},
		{"netsonde_process_fsync_duration_seconds", alertProcessFsync, "process-fsync-slow", []string{"comm", "device"}},
	} {
		a := r[c.alert]
		for _, p := range o.pairs(c.metric, nil) {
			s := p.after
			var bm *dto.Metric
			if p.before != nil {
				bm = p.before.Metric
			}
			buckets, count := histogramDelta(s.Metric, bm)
			if count <= 0 {
				continue
			}
			// The rule's quantile is 0.99 (etcd's guidance is a p99).
			p99 := quantile(0.99, buckets, count)
			if math.IsNaN(p99) || !a.Exceeds(p99) {
				continue
			}
			var subj []string
			for _, l := range c.labels {
				subj = append(subj, s.Label(l))
			}
			f := r.finding(c.id, c.alert, strings.Join(subj, " "))
			f.Summary = fmt.Sprintf("fsync p99 %s on %s, above etcd's %s", fmtSeconds(p99), strings.Join(subj, " "), fmtSeconds(a.Threshold))
			f.Evidence = append(f.Evidence,
				fmt.Sprintf("%s: %s in %.1fs, p99 %s %s %s", SeriesString(c.metric, s.Labels), counted(count, "fsync"), o.Elapsed, fmtSeconds(p99), a.Op, fmtSeconds(a.Threshold)))
			f.Why, f.Next = advice[c.id].Why, advice[c.id].Next
			out = append(out, f)
		}
	}
	return out
}

func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// --- the agent itself ------------------------------------------------------

// downWhy explains the reasons collectors report, in words an operator can
// act on.
var downWhy = map[string]string{
	"no_btf":        "the kernel has no BTF (/sys/kernel/btf/vmlinux): build it with CONFIG_DEBUG_INFO_BTF, or use a newer kernel",
	"not_permitted": "a capability is missing (BPF, PERFMON, NET_ADMIN, SYS_ADMIN) or lockdown refuses it",
	"not_supported": "the kernel is too old for this program or map type",
	"memlock":       "RLIMIT_MEMLOCK is too low for the BPF maps (kernels before 5.11)",
	"no_netlink":    "no netlink view of the interfaces",
	"netns":         "cannot enter or read network namespaces",
	"no_path":       "the path to probe does not exist on this node",
	"bad_flag":      "a flag of the collector is wrong",
	"attach_failed": "an eBPF program could not attach (the tracepoint is missing, or tracefs cannot be mounted)",
}

// checkCollectors reports collectors that are down. Its alert counts down
// collectors across the fleet (its threshold is on that count), so on one
// node the test is the gauge itself, with the alert's exclusion: no_path is
// the fsync probe on a node without etcd, expected on every worker.
func checkCollectors(o Observation, r Rules) []Finding {
	var out []Finding
	for _, s := range o.After.Samples("netsonde_collector_up", nil) {
		name, reason := s.Label("collector"), s.Label("reason")
		if s.Value != 0 || reason == "no_path" {
			continue
		}
		f := r.finding("collector-down", alertCollectorDown, name)
		f.Summary = fmt.Sprintf("collector %s is down on this node (%s)", name, reason)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s = 0", SeriesString("netsonde_collector_up", s.Labels)))
		f.Why = advice["collector-down"].Why
		if w := downWhy[reason]; w != "" {
			f.Why = w + "; " + advice["collector-down"].Why
		}
		f.Next = fmt.Sprintf("the agent's log and landing page say why; --no-collector.%s where it does not apply", name)
		out = append(out, f)
	}
	return out
}
