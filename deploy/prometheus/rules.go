package prometheus

import (
	_ "embed"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"
)

// RulesYAML is rules.yml itself, compiled into the binary so that
// `netsonde doctor` judges with the very thresholds that page: a threshold
// changed in rules.yml changes doctor in the same commit, with no copy to
// forget.
//
//go:embed rules.yml
var RulesYAML []byte

// Alert is one alerting rule of rules.yml, with what doctor needs read out
// of its expression.
type Alert struct {
	Name     string
	Expr     string
	For      time.Duration
	Severity string // the severity label: info, warning or critical
	// Op and Threshold are the expression's final comparison
	// (`... > 0.75`); HasThreshold is false when it compares two vectors
	// instead of a vector and a number.
	Op           string
	Threshold    float64
	HasThreshold bool
	// Range is the last range selector of the expression ([5m] of
	// `increase(x[5m]) > 10`), 0 if it has none: an increase threshold
	// means "per Range", so doctor compares rates over its own shorter
	// window with Threshold/Range.
	Range       time.Duration
	Summary     string
	Description string
	// RunbookURL is the runbook_url annotation, or, until every alert has
	// one, the runbook section derived from the alert's name.
	RunbookURL string
}

// finalComparison matches the comparison that ends an expression with a
// number on its right: the alert's threshold. Only a trailing scalar
// counts, so `a < on(...) b` (two vectors) has no threshold.
var finalComparison = regexp.MustCompile(`(==|!=|>=|<=|>|<)(?:\s*bool)?\s*([-+]?(?:[0-9]*\.)?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$`)

// rangeSelector matches a range selector such as [5m] or [1h30m].
var rangeSelector = regexp.MustCompile(`\[([0-9a-z]+)\]`)

// rulesFile is the part of rules.yml that is read (here and by the
// promtool tests beside it).
type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// Alerts parses the embedded rules.yml.
func Alerts() ([]Alert, error) { return ParseAlerts(RulesYAML) }

// ParseAlerts reads the alerting rules of a Prometheus rules file.
func ParseAlerts(data []byte) ([]Alert, error) {
	var f rulesFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse rules: %w", err)
	}
	var out []Alert
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			a := Alert{
				Name:        r.Alert,
				Expr:        strings.TrimSpace(r.Expr),
				Severity:    r.Labels["severity"],
				Summary:     r.Annotations["summary"],
				Description: r.Annotations["description"],
				RunbookURL:  r.Annotations["runbook_url"],
			}
			if a.RunbookURL == "" {
				a.RunbookURL = DefaultRunbookURL(a.Name)
			}
			if r.For != "" {
				d, err := model.ParseDuration(r.For)
				if err != nil {
					return nil, fmt.Errorf("alert %s: for %q: %w", a.Name, r.For, err)
				}
				a.For = time.Duration(d)
			}
			if m := finalComparison.FindStringSubmatch(a.Expr); m != nil {
				v, err := strconv.ParseFloat(m[2], 64)
				if err != nil {
					return nil, fmt.Errorf("alert %s: threshold %q: %w", a.Name, m[2], err)
				}
				a.Op, a.Threshold, a.HasThreshold = m[1], v, true
			}
			if ms := rangeSelector.FindAllStringSubmatch(a.Expr, -1); len(ms) > 0 {
				d, err := model.ParseDuration(ms[len(ms)-1][1])
				if err != nil {
					return nil, fmt.Errorf("alert %s: range %q: %w", a.Name, ms[len(ms)-1][1], err)
				}
				a.Range = time.Duration(d)
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// Record is one recording rule of rules.yml.
type Record struct {
	Group string
	Name  string
	Expr  string
}

// Records parses the recording rules of the embedded rules.yml, in their
// order: `netsonde doctor --prometheus` puts a rule's expression in place of
// its name where Prometheus does not hold the recorded series, and the
// recorded series in place of the expression where it does.
func Records() ([]Record, error) {
	var f rulesFile
	if err := yaml.Unmarshal(RulesYAML, &f); err != nil {
		return nil, fmt.Errorf("parse rules: %w", err)
	}
	var out []Record
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out = append(out, Record{Group: g.Name, Name: r.Record, Expr: strings.TrimSpace(r.Expr)})
			}
		}
	}
	return out, nil
}

// DefaultRunbookURL is where an alert's runbook section lives when the rule
// carries no runbook_url: docs/runbooks.md has one section per alert, whose
// anchor is the alert's name in lower case.
func DefaultRunbookURL(alert string) string {
	return "docs/runbooks.md#" + strings.ToLower(alert)
}

// Exceeds reports whether v satisfies the alert's final comparison, that is
// whether the alert's expression would select a sample of value v.
func (a Alert) Exceeds(v float64) bool {
	switch a.Op {
	case ">":
		return v > a.Threshold
	case ">=":
		return v >= a.Threshold
	case "<":
		return v < a.Threshold
	case "<=":
		return v <= a.Threshold
	case "==":
		return v == a.Threshold
	case "!=":
		return v != a.Threshold
	}
	return false
}
