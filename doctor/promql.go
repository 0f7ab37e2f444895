package doctor

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"text/template"

	promrules "github.com/netsonde/netsonde/deploy/prometheus"
)

// The shipped alert expressions are evaluated over a whole cluster as they
// are written, with three rewrites (exprForCluster): recording rules the
// Prometheus does not hold are replaced by their expression, the user's
// --selector is added to every selector, and an aggregation across nodes
// keeps the node. The rules are netsonde's own and tested by promtool, so a
// small rewriter over their known shapes is enough; each rewritten
// expression is run against a real Prometheus by the tests.

// selectorRE matches a netsonde series name as the rules use one (its raw
// metrics and its recording rules, level:netsonde_...:operations) with its
// optional matchers. A name inside a string ("icmp_frag_needed_sent") is
// not one: the character before it must not be a quote.
var selectorRE = regexp.MustCompile(`(^|[^a-zA-Z0-9_:"])((?:[a-zA-Z_][a-zA-Z0-9_]*:)?netsonde_[a-zA-Z0-9_:]*)(\{[^}]*\})?`)

// addMatchers adds matchers (`cluster="prod"`) to every netsonde selector
// of expr.
func addMatchers(expr string, matchers []string) string {
	if len(matchers) == 0 {
		return expr
	}
	return selectorRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := selectorRE.FindStringSubmatch(m)
		var parts []string
		if inner := strings.TrimSpace(strings.Trim(sub[3], "{}")); inner != "" {
			parts = append(parts, inner)
		}
		parts = append(parts, matchers...)
		return sub[1] + sub[2] + "{" + strings.Join(parts, ",") + "}"
	})
}

// inlineRecord replaces each use of a recording rule's name by its
// expression. A range over the recorded series (max_over_time(r[1m]))
// becomes a subquery at the default resolution, the global evaluation
// interval, which is the rate at which the rule would have recorded it.
func inlineRecord(expr string, r promrules.Record) (string, error) {
	re := regexp.MustCompile(`(^|[^a-zA-Z0-9_:])` + regexp.QuoteMeta(r.Name) + `(\{[^}]*\})?(\[[^\]:]+\])?`)
	var err error
	out := re.ReplaceAllStringFunc(expr, func(m string) string {
		sub := re.FindStringSubmatch(m)
		if sub[2] != "" {
			err = fmt.Errorf("recording rule %s is used with matchers %s: cannot inline it", r.Name, sub[2])
		}
		if sub[3] != "" {
			return sub[1] + "(" + r.Expr + ")" + strings.TrimSuffix(sub[3], "]") + ":]"
		}
		return sub[1] + "(" + r.Expr + ")"
	})
	return out, err
}

// byClause matches an aggregation's `by (labels)`.
var byClause = regexp.MustCompile(`\bby \(([^)]*)\)`)

// keepNode adds the node label (and instance, for the --from command) to
// every `by (...)` that lacks it: an alert that counts across the fleet
// (NetsondeCollectorDown: one alert for 300 nodes) is asked per node.
func keepNode(expr, nodeLabel string) string {
	return byClause.ReplaceAllStringFunc(expr, func(m string) string {
		labels := strings.Split(byClause.FindStringSubmatch(m)[1], ",")
		have := map[string]bool{}
		for i := range labels {
			labels[i] = strings.TrimSpace(labels[i])
			have[labels[i]] = true
		}
		for _, l := range []string{nodeLabel, "instance"} {
			if !have[l] {
				labels = append(labels, l)
			}
		}
		return "by (" + strings.Join(labels, ", ") + ")"
	})
}

// exprForCluster rewrites an alert's expression for a cluster-wide query.
// recorded names the recording rules whose series the Prometheus holds:
// where a rule's expression appears verbatim, its recorded series is read
// instead (the cheap path at 5,000 nodes); the others are inlined.
func exprForCluster(expr string, records []promrules.Record, recorded map[string]bool, nodeLabel string, matchers []string) (string, error) {
	for _, r := range records {
		if recorded[r.Name] {
			expr = useRecord(expr, r)
		}
	}
	for _, r := range records {
		if recorded[r.Name] {
			continue
		}
		var err error
		if expr, err = inlineRecord(expr, r); err != nil {
			return "", err
		}
	}
	return addMatchers(keepNode(expr, nodeLabel), matchers), nil
}

// sumRateRecord is the shape of the node aggregates (rules.yml's group
// netsonde-node-aggregates): sum without (labels) (rate(metric[range])).
var sumRateRecord = regexp.MustCompile(`^sum without \(([^)]*)\) \(rate\(([a-zA-Z_:][a-zA-Z0-9_:]*)\[(\w+)\]\)\)$`)

// matcherLabel finds the label names of a selector's matchers.
var matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)

// useRecord puts a recording rule's name where expr computes what it
// records. An aggregate also stands in for the same sum over a selection
// of its series ({state="SYN_SENT"}), when the matchers are on labels the
// sum keeps.
func useRecord(expr string, r promrules.Record) string {
	m := sumRateRecord.FindStringSubmatch(r.Expr)
	if m == nil {
		return strings.ReplaceAll(expr, r.Expr, r.Name)
	}
	removed := map[string]bool{}
	for _, l := range strings.Split(m[1], ",") {
		removed[strings.TrimSpace(l)] = true
	}
	pat := regexp.MustCompile(`sum without \(` + regexp.QuoteMeta(m[1]) + `\) \(rate\(` + regexp.QuoteMeta(m[2]) +
		`(\{[^}]*\})?\[` + regexp.QuoteMeta(m[3]) + `\]\)\)`)
	return pat.ReplaceAllStringFunc(expr, func(s string) string {
		matchers := pat.FindStringSubmatch(s)[1]
		for _, l := range matcherLabel.FindAllStringSubmatch(matchers, -1) {
			if removed[l[1]] {
				return s
			}
		}
		return r.Name + matchers
	})
}

// templateFuncs are the functions of Prometheus' alert templates that the
// rules' summaries use, printing as Prometheus prints (template/template.go).
var templateFuncs = template.FuncMap{
	"humanize":           humanize,
	"humanizePercentage": func(v float64) string { return fmt.Sprintf("%.4g%%", v*100) },
	"humanizeDuration":   humanizeDuration,
}

func humanize(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	prefix := ""
	if math.Abs(v) >= 1 {
		for _, p := range []string{"k", "M", "G", "T", "P", "E", "Z", "Y"} {
			if math.Abs(v) < 1000 {
				break
			}
			prefix, v = p, v/1000
		}
		return fmt.Sprintf("%.4g%s", v, prefix)
	}
	for _, p := range []string{"m", "u", "n", "p", "f", "a", "z", "y"} {
		if math.Abs(v) >= 1 {
			break
		}
		prefix, v = p, v*1000
	}
	return fmt.Sprintf("%.4g%s", v, prefix)
}

func humanizeDuration(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	if v == 0 {
		return fmt.Sprintf("%.4gs", v)
	}
	if math.Abs(v) >= 1 {
		sign := ""
		if v < 0 {
			sign, v = "-", -v
		}
		d := int64(v)
		s, m, h, days := d%60, (d/60)%60, (d/3600)%24, d/86400
		switch {
		case days != 0:
			return fmt.Sprintf("%s%dd %dh %dm %ds", sign, days, h, m, s)
		case h != 0:
			return fmt.Sprintf("%s%dh %dm %ds", sign, h, m, s)
		case m != 0:
			return fmt.Sprintf("%s%dm %ds", sign, m, s)
		}
		return fmt.Sprintf("%s%.4gs", sign, v)
	}
	prefix := ""
	for _, p := range []string{"m", "u", "n", "p", "f", "a", "z", "y"} {
		if math.Abs(v) >= 1 {
			break
		}
		prefix, v = p, v*1000
	}
	return fmt.Sprintf("%.4g%ss", v, prefix)
}

// renderSummary renders an alert's summary annotation as Prometheus would
// for a series with these labels and value: the finding says what the page
// would say.
func renderSummary(text string, labels map[string]string, value float64) (string, error) {
	t, err := template.New("summary").Funcs(templateFuncs).Parse("{{$labels := .Labels}}{{$value := .Value}}" + text)
	if err != nil {
		return "", fmt.Errorf("summary template: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, struct {
		Labels map[string]string
		Value  float64
	}{labels, value}); err != nil {
		return "", fmt.Errorf("summary template: %w", err)
	}
	return b.String(), nil
}
