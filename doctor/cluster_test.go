package doctor

import (
	"encoding/json"
	"slices"
	"testing"

	promrules "github.com/netsonde/netsonde/deploy/prometheus"
)

// Every alert a check judges with has a cluster form, whose finding id is
// one the schema allows and has advice: a new check cannot be missing from
// doctor --prometheus without this failing.
func TestClusterFindingsCoverChecks(t *testing.T) {
	var schema struct {
		Defs struct {
			Finding struct {
				Properties struct {
					ID struct {
						Enum []string `json:"enum"`
					} `json:"id"`
				} `json:"properties"`
			} `json:"finding"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(Schema, &schema); err != nil {
		t.Fatal(err)
	}
	ids := schema.Defs.Finding.Properties.ID.Enum
	for _, c := range Checks() {
		for _, a := range append(append([]string{}, c.Alerts...), c.VectorAlerts...) {
			cf, ok := clusterFindings[a]
			if !ok {
				t.Errorf("check %s: alert %s has no cluster form", c.Name, a)
				continue
			}
			if !slices.Contains(ids, cf.id) {
				t.Errorf("alert %s: finding id %q is not in schema.json", a, cf.id)
			}
			if advice[cf.id].Why == "" || advice[cf.id].Next == "" {
				t.Errorf("alert %s: no advice for %q", a, cf.id)
			}
		}
	}
	if !slices.Contains(ids, "node-unreachable") {
		t.Error("node-unreachable is not in schema.json")
	}
}

func TestExprForCluster(t *testing.T) {
	r := rules(t)
	records, err := promrules.Records()
	if err != nil {
		t.Fatal(err)
	}
	sel := []string{`cluster="prod"`}
	for _, c := range []struct {
		alert    string
		recorded map[string]bool
		want     string
	}{
		// The recording rule the alert reads is inlined as a subquery at
		// the evaluation interval, as the rule would have recorded it.
		{alertConntrackFull, nil,
			`max_over_time((netsonde_conntrack_entries{cluster="prod"} / netsonde_conntrack_entries_limit{cluster="prod"})[1m:]) > 0.95`},
		{alertConntrackFull, map[string]bool{"node:netsonde_conntrack_fill:ratio": true},
			`max_over_time(node:netsonde_conntrack_fill:ratio{cluster="prod"}[1m]) > 0.95`},
		{alertDrops, nil,
			`sum without (protocol, interface, namespace, pod) (rate(netsonde_packet_drops_total{cluster="prod"}[5m])) > 50`},
		{alertDrops, map[string]bool{"node_reason:netsonde_packet_drops:rate5m": true},
			`node_reason:netsonde_packet_drops:rate5m{cluster="prod"} > 50`},
		// The aggregate keeps state: it stands in for the sum over one.
		{alertConnectRetries, map[string]bool{"node_state:netsonde_tcp_retransmits:rate5m": true},
			`node_state:netsonde_tcp_retransmits:rate5m{state="SYN_SENT",cluster="prod"} > 1`},
		// One alert for the fleet becomes one finding per node.
		{alertCollectorDown, nil,
			`count by (cluster, collector, reason, node, instance) (netsonde_collector_up{reason!="no_path",cluster="prod"} == 0) > 0`},
	} {
		got, err := exprForCluster(r[c.alert].Expr, records, c.recorded, "node", sel)
		if err != nil {
			t.Errorf("%s: %v", c.alert, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s (recorded %v):\n got %s\nwant %s", c.alert, c.recorded, got, c.want)
		}
	}
	// A name inside a string is not a selector.
	if got := addMatchers(`label_replace(netsonde_x, "signal", "netsonde_y", "", "")`, sel); got !=
		`label_replace(netsonde_x{cluster="prod"}, "signal", "netsonde_y", "", "")` {
		t.Errorf("label_replace: %s", got)
	}
	// A sum over a label the aggregate removes is not the aggregate.
	rec := promrules.Record{Name: "node_reason:netsonde_packet_drops:rate5m",
		Expr: "sum without (protocol, interface, namespace, pod) (rate(netsonde_packet_drops_total[5m]))"}
	in := `sum without (protocol, interface, namespace, pod) (rate(netsonde_packet_drops_total{interface="eth0"}[5m]))`
	if got := useRecord(in, rec); got != in {
		t.Errorf("useRecord over a removed label: %s", got)
	}
}

// The summaries print as Prometheus' template functions print
// (template/template.go's own test cases).
func TestTemplateFuncs(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{humanize(0), "0"},
		{humanize(1234567), "1.235M"},
		{humanize(500), "500"},
		{humanize(0.0012), "1.2m"},
		{humanizeDuration(0), "0s"},
		{humanizeDuration(0.0125), "12.5ms"},
		{humanizeDuration(3.5), "3.5s"},
		{humanizeDuration(90), "1m 30s"},
		{humanizeDuration(93784), "1d 2h 3m 4s"},
		{templateFuncs["humanizePercentage"].(func(float64) string)(0.99), "99%"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	s, err := renderSummary(`Conntrack table on {{ $labels.node }} is full ({{ $value | humanizePercentage }}).`,
		map[string]string{"node": "n1"}, 0.99)
	if err != nil || s != "Conntrack table on n1 is full (99%)." {
		t.Errorf("renderSummary: %q, %v", s, err)
	}
}
