// Package series is the text encoder of /metrics: Cache keeps a
// collector's series from one scrape to the next, each rendered once as
// the text formats write it, and Encoder writes a scrape's page with those
// lines as they are, everything else through client_golang's registries
// and expfmt, byte for byte the page promhttp writes.
package series

import (
	"bytes"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// Cache keeps a metric's series from one scrape to the next, keyed
// by the collector's own comparable label set: interfaces and pods change
// rarely, and building a ConstMetric renders and sorts every label pair of
// every series on every scrape (most of a scrape's allocations at 1,000
// interfaces). A series not asked for during a scrape is dropped at the
// next Sweep.
//
// It keeps each series' exposition text, `name{label="value",...}`, so
// that the Encoder can write the series' line itself (see renderedOf)
// instead of putting it through the registry's checks, sorting and text
// encoder on every scrape; and only that text, not its label pairs too.
type Cache[K comparable] struct {
	mu     sync.Mutex
	m      map[K]*cachedSeries
	gen    uint64
	probed bool        // family has been asked of a registry
	meta   *seriesMeta // what new series share; its family once probed
}

// seriesMeta is what all of a cache's series share: one per cache, and a
// second once the family is known (see probeFamily).
type seriesMeta struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	family *family // nil: the series are not rendered
}

// cachedSeries is one series, as compact as it can be kept: a cache holds
// every series of a family between scrapes, tens of thousands of drops
// series on a busy node. A rendered series keeps only its text, from which
// its label pairs are parsed again on the rare scrape that needs them
// (protobuf); a series that is not rendered keeps its label pairs.
type cachedSeries struct {
	meta   *seriesMeta
	text   []byte            // name{label="value",...}; nil when not rendered
	labels *[]*dto.LabelPair // only when not rendered (a pointer: 48 bytes a series, not 64)
	gen    uint64
}

// NewCache makes a cache for desc's series, all of type typ
// (prometheus.CounterValue or GaugeValue).
func NewCache[K comparable](desc *prometheus.Desc, typ prometheus.ValueType) *Cache[K] {
	return &Cache[K]{m: map[K]*cachedSeries{}, meta: &seriesMeta{desc: desc, typ: typ}}
}

// Metric returns k's series with value v. labelValues, in the desc's
// order, is called only when k is new.
func (c *Cache[K]) Metric(k K, v float64, labelValues func() []string) prometheus.Metric {
	c.mu.Lock()
	s := c.m[k]
	if s == nil {
		labels := prometheus.MakeLabelPairs(c.meta.desc, labelValues())
		if !c.probed && validUTF8(labels) {
			c.probed = true
			if f := probeFamily(c.meta.desc, c.meta.typ, labels); f != nil {
				c.meta = &seriesMeta{desc: c.meta.desc, typ: c.meta.typ, family: f}
			}
		}
		s = &cachedSeries{meta: c.meta}
		if c.meta.family != nil {
			s.text = renderSeries(c.meta.family.Name, labels)
		}
		if s.text == nil {
			s.labels = &labels
		}
		c.m[k] = s
	}
	s.gen = c.gen
	c.mu.Unlock()
	return &sample{s: s, v: v}
}

// Sweep forgets the series not asked for since the previous Sweep; call it
// at the end of each Collect.
func (c *Cache[K]) Sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, s := range c.m {
		if s.gen != c.gen {
			delete(c.m, k)
		}
	}
	c.gen++
}

// Len is the number of series cached.
func (c *Cache[K]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// sample is one series' value in one scrape: 16 bytes, as a Set keeps the
// last collection of every collector for scrapes that share it. Its series
// is shared with the cache and with concurrent scrapes: nothing writes its
// text or label pairs after they are made, as for a ConstMetric.
type sample struct {
	s *cachedSeries
	v float64
}

func (s *sample) Desc() *prometheus.Desc { return s.s.meta.desc }

func (s *sample) Write(out *dto.Metric) error {
	if s.s.text != nil {
		out.Label = parseLabels(s.s.text)
	} else {
		out.Label = *s.s.labels
	}
	switch s.s.meta.typ {
	case prometheus.CounterValue:
		out.Counter = &dto.Counter{Value: &s.v}
	case prometheus.GaugeValue:
		out.Gauge = &dto.Gauge{Value: &s.v}
	default:
		out.Untyped = &dto.Untyped{Value: &s.v}
	}
	return nil
}

// family is a metric family as the exposition formats name it.
type family struct {
	Name string
	Help string
	Type dto.MetricType
}

// renderedOf returns m's exposition text and its family if m comes from a
// Cache whose series are rendered: the series is the line's
// `name{label="value",...}` part, with the labels sorted by name and their
// values escaped, as both the Prometheus text format and OpenMetrics 1.0
// write it. The family is shared by every series of one Cache. The
// series' text is shared too, and not to be modified; compareSeries
// orders two of them as a registry would.
func renderedOf(m prometheus.Metric) (rendered, *family, bool) {
	s, ok := m.(*sample)
	if !ok || s.s.text == nil {
		return rendered{}, nil, false
	}
	return rendered{s.s.text, s.v, m}, s.s.meta.family, true
}

// probeFamily learns the desc's name, help and type by gathering one of
// its series through a registry of its own, which also checks it. It
// returns nil when the family's series must go through the registry on
// every scrape instead: the registry rejects the series, its type is not
// counter or gauge, a name is not a legacy Prometheus name (the text
// formats could escape it differently per scrape), or a counter's name
// does not end in _total (OpenMetrics would name its sample otherwise).
func probeFamily(desc *prometheus.Desc, typ prometheus.ValueType, labels []*dto.LabelPair) *family {
	if typ != prometheus.CounterValue && typ != prometheus.GaugeValue {
		return nil
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(probe{&sample{s: &cachedSeries{meta: &seriesMeta{desc: desc, typ: typ}, labels: &labels}}}); err != nil {
		return nil
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		return nil
	}
	f := &family{Name: mfs[0].GetName(), Help: mfs[0].GetHelp(), Type: mfs[0].GetType()}
	if !model.LegacyValidation.IsValidMetricName(f.Name) || f.Type == dto.MetricType_COUNTER && !strings.HasSuffix(f.Name, "_total") {
		return nil
	}
	for _, lp := range labels {
		if !model.LegacyValidation.IsValidLabelName(lp.GetName()) {
			return nil
		}
	}
	return f
}

// probe is an unchecked collector of one sample.
type probe struct{ m prometheus.Metric }

func (p probe) Describe(chan<- *prometheus.Desc)    {}
func (p probe) Collect(ch chan<- prometheus.Metric) { ch <- p.m }

// renderSeries is name{label="value",...}, label values escaped as the
// text formats do (backslash, double quote, newline). It returns nil for a
// value that is not UTF-8: that series goes through the registry, which
// reports it.
func renderSeries(name string, labels []*dto.LabelPair) []byte {
	b := make([]byte, 0, len(name)+2+len(labels)*24)
	b = append(b, name...)
	if len(labels) == 0 {
		return b
	}
	if !validUTF8(labels) {
		return nil
	}
	for i, lp := range labels {
		if i == 0 {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		b = append(b, lp.GetName()...)
		b = append(b, '=', '"')
		for _, r := range []byte(lp.GetValue()) {
			switch r {
			case '\\':
				b = append(b, '\\', '\\')
			case '"':
				b = append(b, '\\', '"')
			case '\n':
				b = append(b, '\\', 'n')
			default:
				b = append(b, r)
			}
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

func validUTF8(labels []*dto.LabelPair) bool {
	for _, lp := range labels {
		if !utf8.ValidString(lp.GetValue()) {
			return false
		}
	}
	return true
}

// nextLabel reads the label of a rendered series that begins at i: its
// name, its value as rendered (escaped), whether that has escapes, and
// where the next label begins (or the closing brace).
func nextLabel(text []byte, i int) (name, value []byte, next int, escaped bool) {
	eq := i + bytes.IndexByte(text[i:], '=')
	name = text[i:eq]
	i = eq + 2 // past ="
	start := i
	for text[i] != '"' {
		if text[i] == '\\' {
			escaped = true
			i++
		}
		i++
	}
	value = text[start:i]
	i++ // past the closing quote
	if text[i] == ',' {
		i++
	}
	return name, value, i, escaped
}

// firstLabel is where a rendered series' first label begins, or
// len(text) when it has none.
func firstLabel(text []byte) int {
	if i := bytes.IndexByte(text, '{'); i >= 0 && text[i+1] != '}' {
		return i + 1
	}
	return len(text)
}

// labelsEnd reports whether i is past a rendered series' last label.
func labelsEnd(text []byte, i int) bool { return i >= len(text) || text[i] == '}' }

// unescape undoes renderSeries' escapes of a label value.
func unescape(v []byte) []byte {
	out := make([]byte, 0, len(v))
	for j := 0; j < len(v); j++ {
		b := v[j]
		if b == '\\' {
			j++
			b = v[j]
			if b == 'n' {
				b = '\n'
			}
		}
		out = append(out, b)
	}
	return out
}

// parseLabels is the label pairs a series' text was rendered from.
func parseLabels(text []byte) []*dto.LabelPair {
	var out []*dto.LabelPair
	for i := firstLabel(text); !labelsEnd(text, i); {
		name, value, next, escaped := nextLabel(text, i)
		if escaped {
			value = unescape(value)
		}
		n, v := string(name), string(value)
		out = append(out, &dto.LabelPair{Name: &n, Value: &v})
		i = next
	}
	return out
}

func labelCount(text []byte) int {
	n := 0
	for i := firstLabel(text); !labelsEnd(text, i); n++ {
		_, _, i, _ = nextLabel(text, i)
	}
	return n
}

// compareSeries orders two rendered series of one family as
// client_golang's registry orders its metrics (fewer labels first, then
// label values in turn, labels sorted by name), then by their text, so
// that copies of one series end up next to each other.
func compareSeries(a, b []byte) int {
	if na, nb := labelCount(a), labelCount(b); na != nb {
		return na - nb
	}
	for ia, ib := firstLabel(a), firstLabel(b); !labelsEnd(a, ia); {
		_, va, na, ea := nextLabel(a, ia)
		_, vb, nb, eb := nextLabel(b, ib)
		if ea {
			va = unescape(va)
		}
		if eb {
			vb = unescape(vb)
		}
		if c := bytes.Compare(va, vb); c != 0 {
			return c
		}
		ia, ib = na, nb
	}
	return bytes.Compare(a, b)
}
