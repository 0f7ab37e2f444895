package doctor

import (
	"encoding/json"
	"fmt"
	"sort"

	promrules "github.com/netsonde/netsonde/deploy/prometheus"
)

// Severity orders findings. Its names are the alert rules' severity labels,
// so a finding is as loud as the alert that would page for it.
type Severity int

const (
	Info Severity = iota
	Warning
	Critical
)

var severityNames = []string{"info", "warning", "critical"}

func (s Severity) String() string {
	if s < Info || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads a severity label.
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if n == name {
			return Severity(i), nil
		}
	}
	return Info, fmt.Errorf("unknown severity %q", name)
}

func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

func (s *Severity) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	v, err := ParseSeverity(name)
	*s = v
	return err
}

// Finding is one thing wrong (or worth knowing) on the node. Its JSON form
// is the stable schema of `netsonde doctor --output=json`
// (doctor/schema.json, documented in docs/doctor.md): add fields, never
// rename or remove one.
type Finding struct {
	// ID names the check, stable across versions: "mtu-mismatch".
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	// Subject is what the finding is about (an interface, a drop reason, a
	// collector), so two runs can be compared finding by finding.
	Subject  string   `json:"subject"`
	Summary  string   `json:"summary"`
	Evidence []string `json:"evidence"`
	// Why it matters, and the next command to run or the fix.
	Why  string `json:"why"`
	Next string `json:"next"`
	// Alert is the alert rule that pages for the same condition; RunbookURL
	// is its runbook section.
	Alert      string `json:"alert"`
	RunbookURL string `json:"runbook_url"`
	// Node is the node the finding is about, in doctor --prometheus's
	// report (absent on one node, where it is the node doctor ran on).
	Node string `json:"node,omitempty"`
}

// Report is the result of one doctor run.
type Report struct {
	// Source is where the metrics came from: a URL, or "in-process".
	Source string `json:"source"`
	// DurationSeconds is the time between the two scrapes.
	DurationSeconds float64   `json:"duration_seconds"`
	Healthy         bool      `json:"healthy"`
	Findings        []Finding `json:"findings"`
}

// Worst is the highest severity among the findings (Info if none).
func (r Report) Worst() Severity {
	w := Info
	for _, f := range r.Findings {
		w = max(w, f.Severity)
	}
	return w
}

// Rules are the alert rules doctor judges with, by alert name.
type Rules map[string]promrules.Alert

// LoadRules reads the alert rules compiled into the binary.
func LoadRules() (Rules, error) {
	alerts, err := promrules.Alerts()
	if err != nil {
		return nil, err
	}
	r := Rules{}
	for _, a := range alerts {
		r[a.Name] = a
	}
	return r, nil
}

// finding starts a finding from the alert that pages for the same
// condition: its severity and its runbook.
func (r Rules) finding(id, alert, subject string) Finding {
	a := r[alert]
	sev, err := ParseSeverity(a.Severity)
	if err != nil {
		// A severity doctor does not know is still a problem worth a
		// non-zero exit.
		sev = Warning
	}
	return Finding{ID: id, Severity: sev, Subject: subject, Alert: alert, RunbookURL: a.RunbookURL, Evidence: []string{}}
}

// Check is one diagnosis over an observation.
type Check struct {
	Name string
	// Alerts are the rules whose thresholds the check compares with, and
	// VectorAlerts those it takes only severity and runbook from (their
	// expression compares two vectors). Analyse refuses to run with rules
	// that lack one, or a threshold, rather than silently skip the check.
	Alerts       []string
	VectorAlerts []string
	Run          func(o Observation, r Rules) []Finding
}

// Analyse runs every check and orders the findings, most severe first;
// within a severity, in the order the checks produced them (each check
// lists its own findings worst first).
func Analyse(o Observation, r Rules, source string) (Report, error) {
	rep := Report{Source: source, DurationSeconds: o.Elapsed, Findings: []Finding{}}
	for _, c := range Checks() {
		for _, a := range append(c.Alerts, c.VectorAlerts...) {
			if _, ok := r[a]; !ok {
				return rep, fmt.Errorf("check %s: alert %s is not in the rules", c.Name, a)
			}
		}
		for _, a := range c.Alerts {
			if !r[a].HasThreshold {
				return rep, fmt.Errorf("check %s: alert %s has no threshold in %q", c.Name, a, r[a].Expr)
			}
		}
		rep.Findings = append(rep.Findings, c.Run(o, r)...)
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool { return rep.Findings[i].Severity > rep.Findings[j].Severity })
	rep.Healthy = rep.Worst() < Warning
	return rep, nil
}
