package series

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The scrape handler writes the Prometheus text format and OpenMetrics 1.0
// (and 0.0.1) with an Encoder; for anything else (protobuf, OpenMetrics
// 2.0, names escaped with dots) it hands the scrape to promhttp whole.
//
// An Encoder keeps apart the series that come rendered from a Cache
// (mtu, drops: most of a scrape at 1,000 interfaces): their
// `name{labels}` text was rendered once, when the series appeared, so a
// scrape sorts them by that text and writes each line as
// those bytes, a space and the value. Everything else (the registry's
// build, Go, process and cluster metrics, and every collector metric that
// is not rendered, netsonde_collector_up and the like among them) is
// gathered through client_golang's registries as before, with their checks
// and merging, and encoded by expfmt; the two sorted lists of families are
// then merged by name. A rendered family whose name the registries also
// export, or that two caches export with different help or type, is put
// through the registries too, so a family is written once, with one HELP
// and TYPE, whoever exports it.

// CanWrite reports whether a Page writes format.
func CanWrite(format expfmt.Format) bool {
	if format.ToEscapingScheme() == model.DotsEscaping {
		return false // dots escaping rewrites underscores in names
	}
	switch format.FormatType() {
	case expfmt.TypeTextPlain:
		return true
	case expfmt.TypeOpenMetrics:
		v := format.Version()
		return v == expfmt.OpenMetricsVersion_1_0_0 || v == expfmt.OpenMetricsVersion_0_0_1
	}
	return false
}

// rendered is one rendered series of one scrape.
type rendered struct {
	series []byte
	value  float64
	metric prometheus.Metric // the same series, should the registry need it
}

type renderedFamily struct {
	info     *family
	series   []rendered
	conflict bool // another cache exports the name with other help or type
}

// gathered is what a Gatherer returned.
type gathered struct {
	mfs []*dto.MetricFamily
	err error
}

// Encoder writes pages of the text formats (see CanWrite). It keeps, from
// one scrape to the next, the order of each rendered family's series
// (seriesOrder). Its zero value is ready to use; it is safe for
// concurrent scrapes.
type Encoder struct {
	mu     sync.Mutex
	orders map[string]*seriesOrder // by rendered family name
}

// Page is one scrape's families, gathered and sorted: write it with
// Write, then give it back with Release.
type Page struct {
	mfs      []*dto.MetricFamily // through the registries, sorted by name
	names    []string            // of families, sorted
	families map[string]*renderedFamily

	// Errs are the errors of gathering, as a registry reports them;
	// the page holds what could be gathered.
	Errs prometheus.MultiError
}

// pagePool holds the pages of past scrapes, their family map and name
// list emptied for the next: a page outlives Gather, and these two would
// otherwise be made on the heap every scrape.
var pagePool = sync.Pool{New: func() any { return &Page{families: map[string]*renderedFamily{}} }}

// Gather makes one scrape's page of reg's families and of the metrics
// sent on ch until it is closed (the collectors', sent by the caller
// while reg's run: the process collector reads /proc).
func (e *Encoder) Gather(reg prometheus.Gatherer, ch <-chan prometheus.Metric) *Page {
	regc := make(chan gathered, 1)
	go func() {
		mfs, err := reg.Gather()
		regc <- gathered{mfs, err}
	}()
	page := pagePool.Get().(*Page)
	families := page.families
	var rest []prometheus.Metric
	for m := range ch {
		rd, fam, ok := renderedOf(m)
		if !ok {
			rest = append(rest, m)
			continue
		}
		f := families[fam.Name]
		if f == nil {
			f = &renderedFamily{info: fam, series: getRendered(0)}
			families[fam.Name] = f
		} else if f.info != fam && *f.info != *fam {
			f.conflict = true
		}
		f.series = append(f.series, rd)
	}
	mfs, err := gatherRest(<-regc, rest, families)

	var errs prometheus.MultiError
	if err != nil {
		errs = append(errs, err)
	}
	names := page.names[:0]
	for name, f := range families {
		names = append(names, name)
		sorted, dups := e.order(name).sort(f.series)
		putRendered(f.series)
		f.series = sorted
		errs = append(errs, dups...)
	}
	slices.Sort(names)
	page.mfs, page.names, page.Errs = mfs, names, errs
	return page
}

// Empty reports whether the page has no family at all.
func (p *Page) Empty() bool { return len(p.mfs) == 0 && len(p.names) == 0 }

// Release gives the page and its series' slices back to their pools once
// it is written; the page is not to be used after.
func (p *Page) Release() {
	for _, f := range p.families {
		putRendered(f.series)
	}
	clear(p.families)
	clear(p.names)
	*p = Page{families: p.families, names: p.names[:0]}
	pagePool.Put(p)
}

// Write writes the page to w in format (one CanWrite writes), all of its
// families or, when wanted is not nil, those it names. It returns the
// errors of encoding and writing, one per family that failed; the other
// families are written.
func (p *Page) Write(w io.Writer, format expfmt.Format, wanted map[string]bool) []error {
	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		bufPool.Put(bw)
	}()
	enc := expfmt.NewEncoder(bw, format)
	om := format.FormatType() == expfmt.TypeOpenMetrics
	var errs []error
	encErr := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	mfs, names := p.mfs, p.names
	for i, j := 0, 0; i < len(mfs) || j < len(names); {
		if j == len(names) || i < len(mfs) && mfs[i].GetName() < names[j] {
			if wanted == nil || wanted[mfs[i].GetName()] {
				encErr(enc.Encode(mfs[i]))
			}
			i++
			continue
		}
		if wanted == nil || wanted[names[j]] {
			encErr(writeRendered(bw, format, om, p.families[names[j]]))
		}
		j++
	}
	if c, ok := enc.(expfmt.Closer); ok {
		encErr(c.Close()) // OpenMetrics' "# EOF"
	}
	encErr(bw.Flush())
	return errs
}

// gatherRest gathers the registry's families (already gathered, in reg)
// and the Set's metrics that are not rendered, as promhttp would from
// prometheus.Gatherers. A rendered family that cannot be written apart
// (its name is among those families, or it conflicts with itself) joins
// them and leaves families.
func gatherRest(reg gathered, rest []prometheus.Metric, families map[string]*renderedFamily) ([]*dto.MetricFamily, error) {
	for {
		own := prometheus.NewRegistry()
		own.MustRegister(replay(rest))
		mfs, err := prometheus.Gatherers{
			prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return reg.mfs, reg.err }),
			own,
		}.Gather()
		moved := false
		for name, f := range families {
			_, clash := slices.BinarySearchFunc(mfs, name, func(mf *dto.MetricFamily, name string) int {
				return strings.Compare(mf.GetName(), name)
			})
			if clash || f.conflict {
				for _, s := range f.series {
					rest = append(rest, s.metric)
				}
				delete(families, name)
				moved = true
			}
		}
		if !moved {
			return mfs, err
		}
	}
}

// replay is an unchecked collector of metrics already collected.
type replay []prometheus.Metric

func (replay) Describe(chan<- *prometheus.Desc) {}
func (r replay) Collect(ch chan<- prometheus.Metric) {
	for _, m := range r {
		ch <- m
	}
}

// writeRendered writes one rendered family: its HELP and TYPE lines as
// expfmt writes them, then one line per series.
func writeRendered(bw *bufio.Writer, format expfmt.Format, om bool, f *renderedFamily) error {
	header, err := familyHeader(format, *f.info)
	if err != nil {
		return err
	}
	bw.Write(header)
	for _, s := range f.series {
		b := bw.AvailableBuffer()
		b = append(b, s.series...)
		b = append(b, ' ')
		b = appendValue(b, s.value, om)
		b = append(b, '\n')
		bw.Write(b)
	}
	return nil
}

type headerKey struct {
	format expfmt.Format
	family family
}

// headers caches familyHeader: a handful of families times the formats
// asked for.
var headers sync.Map // headerKey → []byte

// familyHeader is the HELP and TYPE lines (the lines before the first
// sample) that expfmt writes for f in format.
func familyHeader(format expfmt.Format, f family) ([]byte, error) {
	key := headerKey{format, f}
	if h, ok := headers.Load(key); ok {
		return h.([]byte), nil
	}
	var zero float64
	m := &dto.Metric{}
	switch f.Type {
	case dto.MetricType_COUNTER:
		m.Counter = &dto.Counter{Value: &zero}
	case dto.MetricType_GAUGE:
		m.Gauge = &dto.Gauge{Value: &zero}
	default:
		return nil, fmt.Errorf("rendered family %s has type %s", f.Name, f.Type)
	}
	var buf bytes.Buffer
	if err := expfmt.NewEncoder(&buf, format).Encode(&dto.MetricFamily{Name: &f.Name, Help: &f.Help, Type: &f.Type, Metric: []*dto.Metric{m}}); err != nil {
		return nil, err
	}
	b, n := buf.Bytes(), 0
	for bytes.HasPrefix(b[n:], []byte("# ")) {
		n += bytes.IndexByte(b[n:], '\n') + 1
	}
	h := bytes.Clone(b[:n])
	headers.Store(key, h)
	return h, nil
}

// appendValue formats v as expfmt does: Go's shortest 'g' form, with the
// text format's and OpenMetrics' spellings of 0, ±1, NaN and infinities,
// and OpenMetrics' ".0" on integers.
func appendValue(b []byte, v float64, om bool) []byte {
	switch {
	case v == 1 || v == 0 || v == -1:
		b = strconv.AppendInt(b, int64(v), 10)
		if om {
			b = append(b, '.', '0')
		}
		return b
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, +1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	n := len(b)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	if om && !bytes.ContainsAny(b[n:], "e.") {
		b = append(b, '.', '0')
	}
	return b
}

var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// seriesOrder is the order of one rendered family's series in the last
// scrape that had to sort them, by the address of each series' text: the
// texts live as long as their series do in a Cache, so a scrape of
// the same series puts them in order without comparing (the map's keys
// keep those texts from being freed and their addresses reused).
//
// It does not keep a copy of the texts in that order, one block to write
// from: at 10,000 series that was 1.5 MB held between scrapes for less
// than 0.2 ms of a scrape's CPU at 1,000 interfaces.
type seriesOrder struct {
	mu   sync.Mutex
	rank map[*byte]int
}

func (e *Encoder) order(name string) *seriesOrder {
	e.mu.Lock()
	defer e.mu.Unlock()
	o := e.orders[name]
	if o == nil {
		o = &seriesOrder{}
		if e.orders == nil {
			e.orders = map[string]*seriesOrder{}
		}
		e.orders[name] = o
	}
	return o
}

// sort returns the series sorted as the registry sorts a family's metrics,
// without the second and later copies of a series, each an error, as in a
// registry.
func (o *seriesOrder) sort(series []rendered) ([]rendered, []error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.rank) == len(series) {
		// The same texts as then, each once: their order is known, and
		// they are distinct (the ranks were given after removing copies).
		out := getRendered(len(series))[:len(series)]
		ok := true
		for _, s := range series {
			r, known := o.rank[&s.series[0]]
			if !known || out[r].series != nil {
				ok = false
				break
			}
			out[r] = s
		}
		if ok {
			return out, nil
		}
		putRendered(out)
	}
	idx := make([]int32, len(series))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int { return compareSeries(series[a].series, series[b].series) })
	out := getRendered(len(series))
	var errs []error
	for _, i := range idx {
		s := series[i]
		if len(out) > 0 && bytes.Equal(s.series, out[len(out)-1].series) {
			errs = append(errs, fmt.Errorf("collected metric %s was collected before with the same name and label values", s.series))
			continue
		}
		out = append(out, s)
	}
	o.rank = make(map[*byte]int, len(out))
	for i, s := range out {
		o.rank[&s.series[0]] = i
	}
	return out, errs
}

// renderedPool holds the slices of rendered series of past scrapes: at
// 1,000 interfaces each is about 100 KB, two per family per scrape.
var renderedPool sync.Pool // *[]rendered

func getRendered(n int) []rendered {
	if p, ok := renderedPool.Get().(*[]rendered); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]rendered, 0, max(n, 64))
}

func putRendered(s []rendered) {
	s = s[:cap(s)]
	clear(s) // no metric kept alive by the pool
	s = s[:0]
	renderedPool.Put(&s)
}
