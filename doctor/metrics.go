// Package doctor turns two scrapes of netsonde's /metrics, taken some
// seconds apart, into findings: what is wrong on this node's network, the
// numbers that show it, and the runbook section of the alert that would
// page for it. It judges with the alert rules' own thresholds
// (deploy/prometheus/rules.yml), so doctor and the pager never disagree
// about what "too many" means.
package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Snapshot is one parsed scrape, by metric family name.
type Snapshot map[string]*dto.MetricFamily

// ErrNotMetrics and ErrNotNetsonde tell a page that is not a Prometheus
// exposition apart from another exporter's metrics, so the one-line reason
// says which mistake was made (a wrong port is the usual one).
var (
	ErrNotMetrics  = errors.New("not Prometheus metrics")
	ErrNotNetsonde = errors.New("not netsonde metrics (no netsonde_build_info or netsonde_collector_up)")
)

// maxScrapeBytes bounds what doctor reads from a page: a netsonde page
// with a thousand pods is well under it, and a wrong URL serving a
// download must not fill memory.
const maxScrapeBytes = 64 << 20

// Parse reads a Prometheus text exposition and checks that it comes from
// netsonde.
func Parse(r io.Reader) (Snapshot, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxScrapeBytes))
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	if looksLikeHTML(data) {
		return nil, fmt.Errorf("%w: the page is HTML", ErrNotMetrics)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotMetrics, err)
	}
	// build_info is on every netsonde page; collector_up is what fixtures
	// and an agent of a version without build_info have.
	_, info := fams["netsonde_build_info"]
	_, up := fams["netsonde_collector_up"]
	if !info && !up {
		return nil, ErrNotNetsonde
	}
	return Snapshot(fams), nil
}

func looksLikeHTML(data []byte) bool {
	head := bytes.ToLower(bytes.TrimSpace(data[:min(len(data), 512)]))
	return bytes.HasPrefix(head, []byte("<!doctype html")) || bytes.HasPrefix(head, []byte("<html")) ||
		bytes.Contains(head, []byte("<head>")) || bytes.Contains(head, []byte("<body"))
}

// Sample is one series: its labels and value (a histogram's count).
type Sample struct {
	Labels map[string]string
	Value  float64
	Metric *dto.Metric
}

// Label returns a label's value ("" if absent).
func (s Sample) Label(name string) string { return s.Labels[name] }

// key identifies a series within its family, to pair a series of one
// scrape with the same series of the other.
func (s Sample) key() string {
	names := make([]string, 0, len(s.Labels))
	for n := range s.Labels {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%q,", n, s.Labels[n])
	}
	return b.String()
}

// Samples lists the series of a family whose labels include every pair of
// match, in a stable order.
func (s Snapshot) Samples(name string, match map[string]string) []Sample {
	fam := s[name]
	if fam == nil {
		return nil
	}
	var out []Sample
	for _, m := range fam.GetMetric() {
		labels := make(map[string]string, len(m.GetLabel()))
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if !matches(labels, match) {
			continue
		}
		out = append(out, Sample{Labels: labels, Value: value(m), Metric: m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

func matches(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount())
	}
	return math.NaN()
}

// Observation is two scrapes of one agent, Elapsed apart: counters become
// increases and rates over the run, as Prometheus' increase() and rate()
// make them over their range.
type Observation struct {
	Before, After Snapshot
	Elapsed       float64 // seconds
}

// Delta is a series' increase during the observation.
type Delta struct {
	Labels   map[string]string
	Increase float64
}

// pair is a series of the second scrape and the same series in the first
// (nil when it appeared during the run).
type pair struct {
	after  Sample
	before *Sample
}

func (o Observation) pairs(name string, match map[string]string) []pair {
	before := map[string]Sample{}
	for _, s := range o.Before.Samples(name, match) {
		before[s.key()] = s
	}
	var out []pair
	for _, a := range o.After.Samples(name, match) {
		p := pair{after: a}
		if b, ok := before[a.key()]; ok {
			p.before = &b
		}
		out = append(out, p)
	}
	return out
}

// Deltas returns the increase of each series during the run. A series that
// appeared during the run started from zero (netsonde creates a series at
// its first event); a counter that went down was reset (the agent
// restarted), so its increase is its value after, as Prometheus' increase()
// treats a reset.
func (o Observation) Deltas(name string, match map[string]string) []Delta {
	var out []Delta
	for _, p := range o.pairs(name, match) {
		d := Delta{Labels: p.after.Labels, Increase: p.after.Value}
		if p.before != nil && p.after.Value >= p.before.Value {
			d.Increase = p.after.Value - p.before.Value
		}
		out = append(out, d)
	}
	return out
}

// Rate is an increase during the run per second.
func (o Observation) Rate(increase float64) float64 {
	if o.Elapsed <= 0 {
		return 0
	}
	return increase / o.Elapsed
}

// Increase sums the increases of every series of name matching match.
func (o Observation) Increase(name string, match map[string]string) float64 {
	var total float64
	for _, d := range o.Deltas(name, match) {
		total += d.Increase
	}
	return total
}

// SeriesString renders a series as PromQL would print it, for evidence a
// reader can paste into a query.
func SeriesString(name string, labels map[string]string, keep ...string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		if len(keep) > 0 && !contains(keep, n) {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(name)
	if len(names) > 0 {
		b.WriteByte('{')
		for i, n := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", n, labels[n])
		}
		b.WriteByte('}')
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
