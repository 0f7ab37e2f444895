package doctor

import (
	"fmt"
	"sort"
)

const (
	alertConnectFailures = "NetsondeTCPConnectFailures"
	alertMeshPathFailing = "NetsondeMeshPathFailing"
)

// connectsMinRate is the alert's own filter on the denominator: namespaces
// opening fewer connections a second are left out, so one failed connect
// of a quiet namespace is not a finding. It is the "> 0.2" inside the
// expression; the final comparison (the failed share) is the threshold.
const connectsMinRate = 0.2

// checkConnects reports namespaces whose connects are refused or go
// unanswered, at the share NetsondeTCPConnectFailures pages on.
func checkConnects(o Observation, r Rules) []Finding {
	a := r[alertConnectFailures]
	all, failed := map[string]float64{}, map[string]float64{}
	byResult := map[string]map[string]float64{}
	for _, d := range o.Deltas("netsonde_tcp_connects_total", nil) {
		ns := d.Labels["namespace"]
		all[ns] += d.Increase
		res := d.Labels["result"]
		if res == "refused" || res == "timeout" {
			failed[ns] += d.Increase
			if byResult[ns] == nil {
				byResult[ns] = map[string]float64{}
			}
			who := "the host"
			if d.Labels["pod"] != "" {
				who = "pod " + ns + "/" + d.Labels["pod"]
			}
			byResult[ns][res+" from "+who] += d.Increase
		}
	}
	var out []Finding
	for _, ns := range sortedKeys(all) {
		if failed[ns] == 0 || o.Rate(all[ns]) <= connectsMinRate {
			continue
		}
		share := failed[ns] / all[ns]
		if !a.Exceeds(share) {
			continue
		}
		who := "namespace " + ns
		if ns == "" {
			who = "the host"
		}
		f := r.finding("tcp-connect-failures", alertConnectFailures, who)
		f.Summary = fmt.Sprintf("%s of %s TCP connects from %s failed in %.1fs (%.0f%%)",
			num(failed[ns]), num(all[ns]), who, o.Elapsed, 100*share)
		f.Evidence = append(f.Evidence, top(byResult[ns], 5, "%s %s")...)
		f.Evidence = append(f.Evidence, fmt.Sprintf("failed share %.3f %s %s (%s)", share, a.Op, num(a.Threshold), alertConnectFailures))
		f.Why = advice["tcp-connect-failures"].Why
		f.Next = "kubectl get endpoints for the Services they call; conntrack -S; the NetworkPolicies of " + who
		out = append(out, f)
	}
	return out
}

// checkMesh reports node-to-node probes lost on one path (underlay or
// overlay) while the other path to the same peers answers: the VXLAN, MTU
// or firewall signature NetsondeMeshPathFailing pages on.
func checkMesh(o Observation, r Rules) []Finding {
	lost := map[string]float64{}
	for _, d := range o.Deltas("netsonde_node_unreachable_total", nil) {
		lost[d.Labels["path"]] += d.Increase
	}
	sent := map[string]float64{}
	for _, s := range o.After.Samples("netsonde_node_rtt_seconds_count", nil) {
		sent[s.Label("path")] += s.Value
	}
	var out []Finding
	for _, path := range sortedKeys(lost) {
		if lost[path] == 0 {
			continue
		}
		failing := 0
		for _, other := range sortedKeys(lost) {
			if lost[other] > 0 {
				failing++
			}
		}
		if failing > 1 {
			// Both paths fail: the peers are down, not one path.
			continue
		}
		f := r.finding("mesh-path-failing", alertMeshPathFailing, path)
		f.Summary = fmt.Sprintf("%s probes to peer nodes were lost over the %s in %.1fs; the other path answers", num(lost[path]), path, o.Elapsed)
		f.Evidence = append(f.Evidence, fmt.Sprintf("netsonde_node_unreachable_total{path=%q} +%s", path, num(lost[path])))
		f.Why, f.Next = advice["mesh-path-failing"].Why, advice["mesh-path-failing"].Next
		out = append(out, f)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
