package doctor

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

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
