package doctor

import (
	"fmt"
	"sort"
	"strings"
)

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
