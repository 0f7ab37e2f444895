package doctor

import "fmt"

const alertDNSTimeouts = "NetsondeDNSTimeouts"

// dnsMinRate is the alert's filter on the denominator ("> 0.1" queries a
// second): a pod asking less often is left out, one lost query of three is
// not a trend. The final comparison (the unanswered share) is the threshold.
const dnsMinRate = 0.1

func podOf(l map[string]string) string {
	if l["pod"] == "" {
		return "the host"
	}
	return "pod " + l["namespace"] + "/" + l["pod"]
}

// checkDNS reports pods whose DNS queries go unanswered at the share
// NetsondeDNSTimeouts pages on, and, as notes, answers that were SERVFAIL
// (no alert of its own: a resolver's upstream failing, which the pod sees
// as an error, not a hang).
func checkDNS(o Observation, r Rules) []Finding {
	a := r[alertDNSTimeouts]
	queries, timeouts, servfail := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, d := range o.Deltas("netsonde_dns_queries_total", nil) {
		queries[podOf(d.Labels)] += d.Increase
	}
	for _, d := range o.Deltas("netsonde_dns_timeouts_total", nil) {
		timeouts[podOf(d.Labels)] += d.Increase
	}
	for _, d := range o.Deltas("netsonde_dns_responses_total", map[string]string{"rcode": "SERVFAIL"}) {
		servfail[podOf(d.Labels)] += d.Increase
	}
	dropped := map[string]float64{}
	for _, d := range o.Deltas("netsonde_dns_dropped_total", nil) {
		dropped[d.Labels["reason"]] += d.Increase
	}
	var out []Finding
	for _, who := range sortedKeys(queries) {
		q, t := queries[who], timeouts[who]
		if t == 0 || o.Rate(q) <= dnsMinRate {
			continue
		}
		share := t / q
		if !a.Exceeds(share) {
			continue
		}
		f := r.finding("dns-timeouts", alertDNSTimeouts, who)
		f.Summary = fmt.Sprintf("%s of %s DNS queries from %s got no answer in %.1fs (%.0f%%)", num(t), num(q), who, o.Elapsed, 100*share)
		f.Evidence = append(f.Evidence, fmt.Sprintf("unanswered share %.3f %s %s (%s)", share, a.Op, num(a.Threshold), alertDNSTimeouts))
		f.Evidence = append(f.Evidence, top(dropped, 3, "%s DNS packets dropped by the kernel: %s")...)
		f.Why, f.Next = advice["dns-timeouts"].Why, advice["dns-timeouts"].Next
		out = append(out, f)
	}
	for _, who := range sortedKeys(servfail) {
		n := servfail[who]
		if n == 0 {
			continue
		}
		f := r.finding("dns-servfail", alertDNSTimeouts, who)
		f.Severity = Info
		f.Summary = fmt.Sprintf("%s DNS answers to %s were SERVFAIL in %.1fs", num(n), who, o.Elapsed)
		f.Evidence = append(f.Evidence, fmt.Sprintf("netsonde_dns_responses_total{rcode=\"SERVFAIL\"} +%s", num(n)))
		f.Why = "the resolver could not answer (its upstream failed or DNSSEC did not validate): the pod gets an error at once"
		f.Next = "kubectl -n kube-system logs -l k8s-app=kube-dns; dig @<resolver> <name> from the pod's namespace"
		out = append(out, f)
	}
	return out
}
