package collectors

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// SeriesCache keeps the rendered label pairs of a metric's series from one
// scrape to the next, keyed by the collector's own comparable label set:
// interfaces and pods change rarely, and building a ConstMetric renders
// and sorts every label pair of every series on every scrape (most of a
// scrape's allocations at 1,000 interfaces). A series not asked for during
// a scrape is dropped at the next Sweep.
type SeriesCache[K comparable] struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType

	mu  sync.Mutex
	m   map[K]*cachedSeries
	gen uint64
}

type cachedSeries struct {
	labels []*dto.LabelPair
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
		c.m[k] = s
	}
	s.gen = c.gen
	c.mu.Unlock()
	return &sample{desc: c.desc, typ: c.typ, labels: s.labels, v: v}
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
