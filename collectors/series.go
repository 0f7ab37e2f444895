package collectors

import (
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// SeriesCache keeps the rendered label pairs of a metric's series from one
// scrape to the next, keyed by the collector's own comparable label set:
// interfaces and pods change rarely, and building a ConstMetric renders
// and sorts every label pair of every series on every scrape (most of a
// scrape's allocations at 1,000 interfaces). A series not asked for during
// a scrape is dropped at the next Sweep.
//
// It also keeps each series' exposition text, `name{label="value",...}`,
// so that the scrape handler can write the series' line itself (see
// Rendered) instead of putting it through the registry's checks, sorting
// and text encoder on every scrape.
type SeriesCache[K comparable] struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType

	mu     sync.Mutex
	m      map[K]*cachedSeries
	gen    uint64
	probed bool    // family has been asked of a registry
	family *Family // nil: the series are not rendered (see probeFamily)
}

type cachedSeries struct {
	labels []*dto.LabelPair
	text   []byte // nil when not rendered
	gen    uint64
}

// NewSeriesCache makes a cache for desc's series, all of type typ
// (prometheus.CounterValue or GaugeValue).
func NewSeriesCache[K comparable](desc *prometheus.Desc, typ prometheus.ValueType) *SeriesCache[K] {
	return &SeriesCache[K]{desc: desc, typ: typ, m: map[K]*cachedSeries{}}
}

// Metric returns k's series with value v. labelValues, in the desc's
// order, is called only when k is new.
func (c *SeriesCache[K]) Metric(k K, v float64, labelValues func() []string) prometheus.Metric {
	c.mu.Lock()
	s := c.m[k]
	if s == nil {
		s = &cachedSeries{labels: prometheus.MakeLabelPairs(c.desc, labelValues())}
		if !c.probed && validUTF8(s.labels) {
			c.probed = true
			c.family = probeFamily(c.desc, c.typ, s.labels)
		}
		if c.family != nil {
			s.text = renderSeries(c.family.Name, s.labels)
		}
		c.m[k] = s
	}
	s.gen = c.gen
	c.mu.Unlock()
	return &sample{desc: c.desc, typ: c.typ, labels: s.labels, v: v, family: c.family, text: s.text}
}

// Sweep forgets the series not asked for since the previous Sweep; call it
// at the end of each Collect.
func (c *SeriesCache[K]) Sweep() {
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
func (c *SeriesCache[K]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// sample is one series' value in one scrape. Its label pairs are shared
// with the cache and with concurrent scrapes: nothing writes them after
// MakeLabelPairs, as for a ConstMetric.
type sample struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	labels []*dto.LabelPair
	v      float64
	family *Family
	text   []byte
}

func (s *sample) Desc() *prometheus.Desc { return s.desc }

func (s *sample) Write(out *dto.Metric) error {
	out.Label = s.labels
	switch s.typ {
	case prometheus.CounterValue:
		out.Counter = &dto.Counter{Value: &s.v}
	case prometheus.GaugeValue:
		out.Gauge = &dto.Gauge{Value: &s.v}
	default:
		out.Untyped = &dto.Untyped{Value: &s.v}
	}
	return nil
}

// Family is a metric family as the exposition formats name it.
type Family struct {
	Name string
	Help string
	Type dto.MetricType
}

// Rendered is a sample whose exposition text is ready: Series is the
// line's `name{label="value",...}` part, with the labels sorted by name
// and their values escaped, as both the Prometheus text format and
// OpenMetrics 1.0 write it, and Value the sample's value. Family is shared
// by every series of one SeriesCache.
type Rendered struct {
	Family *Family
	Series []byte
	Value  float64
	// Labels are the series' label pairs, sorted by name, shared and
	// not to be modified.
	Labels []*dto.LabelPair
}

// RenderedOf returns m's exposition text if m comes from a SeriesCache
// whose series are rendered.
func RenderedOf(m prometheus.Metric) (Rendered, bool) {
	s, ok := m.(*sample)
	if !ok || s.text == nil {
		return Rendered{}, false
	}
	return Rendered{Family: s.family, Series: s.text, Value: s.v, Labels: s.labels}, true
}

// probeFamily learns the desc's name, help and type by gathering one of
// its series through a registry of its own, which also checks it. It
// returns nil when the family's series must go through the registry on
// every scrape instead: the registry rejects the series, its type is not
// counter or gauge, a name is not a legacy Prometheus name (the text
// formats could escape it differently per scrape), or a counter's name
// does not end in _total (OpenMetrics would name its sample otherwise).
func probeFamily(desc *prometheus.Desc, typ prometheus.ValueType, labels []*dto.LabelPair) *Family {
	if typ != prometheus.CounterValue && typ != prometheus.GaugeValue {
		return nil
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(probe{&sample{desc: desc, typ: typ, labels: labels}}); err != nil {
		return nil
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		return nil
	}
	f := &Family{Name: mfs[0].GetName(), Help: mfs[0].GetHelp(), Type: mfs[0].GetType()}
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
