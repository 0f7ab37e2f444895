package doctor

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAcceptsOnlyNetsonde(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		want       error
	}{
		{"html", "<!DOCTYPE html>\n<html><head><title>Grafana</title></head><body></body></html>\n", ErrNotMetrics},
		{"html without doctype", "  <html><body>login</body></html>", ErrNotMetrics},
		{"another exporter", "# TYPE node_load1 gauge\nnode_load1 0.5\n", ErrNotNetsonde},
		{"garbage", "this is { not metrics\n", ErrNotMetrics},
		{"empty", "", ErrNotNetsonde},
		{"netsonde with every collector off", "# TYPE netsonde_build_info gauge\nnetsonde_build_info{version=\"1\"} 1\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.page))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Parse = %v, want %v", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("reason is not one line: %q", err)
			}
		})
	}
}

func TestDeltasTreatResetsAndNewSeries(t *testing.T) {
	before, err := Parse(strings.NewReader(`netsonde_collector_up{collector="drops",reason=""} 1
# TYPE netsonde_packet_drops_total counter
netsonde_packet_drops_total{reason="A"} 100
netsonde_packet_drops_total{reason="B"} 500
`))
	if err != nil {
		t.Fatal(err)
	}
	after, err := Parse(strings.NewReader(`netsonde_collector_up{collector="drops",reason=""} 1
# TYPE netsonde_packet_drops_total counter
netsonde_packet_drops_total{reason="A"} 150
netsonde_packet_drops_total{reason="B"} 20
netsonde_packet_drops_total{reason="C"} 7
`))
	if err != nil {
		t.Fatal(err)
	}
	o := Observation{Before: before, After: after, Elapsed: 10}
	got := map[string]float64{}
	for _, d := range o.Deltas("netsonde_packet_drops_total", nil) {
		got[d.Labels["reason"]] = d.Increase
	}
	// A: 50 more; B: reset (agent restarted), 20 since; C: new, 7 since.
	if got["A"] != 50 || got["B"] != 20 || got["C"] != 7 {
		t.Fatalf("increases %v, want A=50 B=20 C=7", got)
	}
}

// Whatever a URL serves, Parse returns a snapshot or an error, never
// panics, and a snapshot it returns can be analysed.
func FuzzParse(f *testing.F) {
	f.Add("netsonde_collector_up{collector=\"x\",reason=\"\"} 1\n")
	f.Add("# TYPE netsonde_mtu_mismatch gauge\nnetsonde_mtu_mismatch{interface=\"vx0\",reason=\"exceeds_underlay\"} 1\nnetsonde_collector_up 0\n")
	f.Add("# TYPE netsonde_disk_fsync_duration_seconds histogram\nnetsonde_disk_fsync_duration_seconds_bucket{le=\"+Inf\"} 3\nnetsonde_disk_fsync_duration_seconds_count 3\nnetsonde_collector_up 1\n")
	f.Add("<html></html>")
	f.Add("# TYPE netsonde_conntrack_entries_limit gauge\nnetsonde_conntrack_entries_limit 0\nnetsonde_conntrack_entries NaN\nnetsonde_collector_up 1\n")
	r, err := LoadRules()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, page string) {
		s, err := Parse(strings.NewReader(page))
		if err != nil {
			if !errors.Is(err, ErrNotMetrics) && !errors.Is(err, ErrNotNetsonde) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if _, err := Analyse(Observation{Before: s, After: s, Elapsed: 1}, r, "fuzz"); err != nil {
			t.Fatal(err)
		}
	})
}
