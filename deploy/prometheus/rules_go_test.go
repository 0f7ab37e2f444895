package prometheus

import (
	"testing"
	"time"
)

// The thresholds doctor reads are the ones written in rules.yml: if an
// expression is rewritten so its final comparison no longer parses, this
// fails here rather than doctor going quiet.
func TestAlertsFromRulesYAML(t *testing.T) {
	alerts, err := Alerts()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Alert{}
	for _, a := range alerts {
		byName[a.Name] = a
		if a.Severity == "" {
			t.Errorf("%s: no severity label", a.Name)
		}
		if a.RunbookURL == "" {
			t.Errorf("%s: no runbook URL", a.Name)
		}
	}
	for _, w := range []struct {
		name      string
		op        string
		threshold float64
		rng       time.Duration
	}{
		{"NetsondeConntrackTableFilling", ">", 0.75, 0},
		// The highest fill of the last minute (the GC dips a full table
		// under 95%); doctor compares the gauge it reads with 0.95.
		{"NetsondeConntrackTableFull", ">", 0.95, time.Minute},
		{"NetsondeConntrackDroppingPackets", ">", 10, 5 * time.Minute},
		{"NetsondeConntrackInsertFailed", ">", 0, 5 * time.Minute},
		{"NetsondeConntrackEarlyDrop", ">", 60, 10 * time.Minute},
		{"NetsondeMTUMismatch", "==", 1, 0},
		{"NetsondePMTUBlackHole", "==", 1, 0},
		{"NetsondeDiskFsyncSlow", ">", 0.01, 5 * time.Minute},
		{"NetsondePacketDropsHigh", ">", 50, 5 * time.Minute},
		{"NetsondeTCPRetransmitsHigh", ">", 10, 5 * time.Minute},
		{"NetsondeTCPConnectRetries", ">", 1, 5 * time.Minute},
		{"NetsondeTCPConnectFailures", ">", 0.1, 5 * time.Minute},
		// A count of down collectors across the fleet (doctor tests the
		// gauge itself on one node).
		{"NetsondeCollectorDown", ">", 0, 0},
	} {
		a, ok := byName[w.name]
		if !ok {
			t.Errorf("%s: not in rules.yml", w.name)
			continue
		}
		if !a.HasThreshold || a.Op != w.op || a.Threshold != w.threshold || a.Range != w.rng {
			t.Errorf("%s: got %s %v range %v, want %s %v range %v (expr %q)", w.name, a.Op, a.Threshold, a.Range, w.op, w.threshold, w.rng, a.Expr)
		}
	}
	// Vector against vector: no scalar threshold to read.
	if a := byName["NetsondePathMTUBelowInterfaceMTU"]; a.HasThreshold {
		t.Errorf("NetsondePathMTUBelowInterfaceMTU: read threshold %v from a vector comparison", a.Threshold)
	}
}

func TestRunbookURL(t *testing.T) {
	alerts, err := ParseAlerts([]byte(`groups:
  - name: g
    rules:
      - alert: WithLink
        expr: x > 1
        annotations: {runbook_url: "https://example.test/runbooks.md#with-link"}
      - alert: WithoutLink
        expr: y >= 2e3
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := alerts[0].RunbookURL; got != "https://example.test/runbooks.md#with-link" {
		t.Errorf("annotation not used: %q", got)
	}
	if got := alerts[1].RunbookURL; got != "docs/runbooks.md#withoutlink" {
		t.Errorf("fallback: %q", got)
	}
	if a := alerts[1]; a.Op != ">=" || a.Threshold != 2000 || !a.Exceeds(2000) || a.Exceeds(1999) {
		t.Errorf("y >= 2e3: %+v", a)
	}
}
