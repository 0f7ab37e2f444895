package doctor

import "fmt"

// Below the IP layer: the neighbour tables and the interfaces' queues.
const (
	alertNeighbourFull = "NetsondeNeighbourTableFull"
	alertQdiscDrops    = "NetsondeQdiscDrops"
)

// checkNeighbour names a neighbour table above the alert's share of
// gc_thresh3, or one that refused entries during the run (any refusal
// fires the alert: a refused neighbour is a connection that failed).
func checkNeighbour(o Observation, r Rules) []Finding {
	a := r[alertNeighbourFull]
	var out []Finding
	for _, e := range o.After.Samples("netsonde_neighbour_entries", nil) {
		family := e.Label("family")
		match := map[string]string{"family": family}
		limits := o.After.Samples("netsonde_neighbour_entries_limit", match)
		refused := o.Increase("netsonde_neighbour_table_full_total", match)
		if len(limits) != 1 || limits[0].Value <= 0 {
			continue
		}
		l := limits[0].Value
		ratio := e.Value / l
		if refused == 0 && !a.Exceeds(ratio) {
			continue
		}
		f := r.finding("neighbour-table-full", alertNeighbourFull, family)
		if refused > 0 {
			f.Summary = fmt.Sprintf("the %s neighbour table refused %s in %.1fs (%s of %s entries)", family, counted(refused, "new entry"), o.Elapsed, num(e.Value), num(l))
		} else {
			f.Summary = fmt.Sprintf("the %s neighbour table is %.0f%% full (%s of %s entries)", family, 100*ratio, num(e.Value), num(l))
		}
		f.Evidence = append(f.Evidence,
			fmt.Sprintf(`netsonde_neighbour_entries{family=%q} = %s`, family, num(e.Value)),
			fmt.Sprintf(`netsonde_neighbour_entries_limit{family=%q} = %s (gc_thresh3)`, family, num(l)),
			fmt.Sprintf(`netsonde_neighbour_table_full_total{family=%q} +%s`, family, num(refused)),
			fmt.Sprintf("fill %.3f %s %s, or any refusal (%s)", ratio, a.Op, num(a.Threshold), alertNeighbourFull))
		f.Why, f.Next = advice["neighbour-table-full"].Why, advice["neighbour-table-full"].Next
		out = append(out, f)
	}
	return out
}

// checkQdisc names each root qdisc that dropped during the run faster
// than the alert's rate; slower drops are shown as info.
func checkQdisc(o Observation, r Rules) []Finding {
	a := r[alertQdiscDrops]
	var out []Finding
	for _, d := range o.Deltas("netsonde_qdisc_drops_total", nil) {
		if d.Increase <= 0 {
			continue
		}
		iface, kind := d.Labels["interface"], d.Labels["kind"]
		rate := o.Rate(d.Increase)
		f := r.finding("qdisc-drops", alertQdiscDrops, iface)
		if !a.Exceeds(rate) {
			f.Severity = Info
		}
		f.Summary = fmt.Sprintf("the %s qdisc of %s dropped %s in %.1fs (%.1f/s)", kind, iface, counted(d.Increase, "packet"), o.Elapsed, rate)
		f.Evidence = append(f.Evidence,
			fmt.Sprintf(`netsonde_qdisc_drops_total{interface=%q,kind=%q} +%s`, iface, kind, num(d.Increase)),
			fmt.Sprintf("%.1f/s; %s fires at %s %s/s for %s", rate, alertQdiscDrops, a.Op, num(a.Threshold), fmtRange(a.For)))
		f.Why = advice["qdisc-drops"].Why
		f.Next = fmt.Sprintf("tc -s qdisc show dev %s; ip -s link show %s; ethtool %s | grep Speed", iface, iface, iface)
		out = append(out, f)
	}
	return out
}
