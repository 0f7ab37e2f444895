package series

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var seriesTestDesc = prometheus.NewDesc("netsonde_test_values_total", "Values.", []string{"value", "other"}, prometheus.Labels{"const": "c"})

// A rendered series keeps only its text: the label pairs parsed back from
// it are the ones it was rendered from, escapes undone, for every value
// the text formats escape.
func TestRenderedLabelsParsedBack(t *testing.T) {
	c := NewCache[string](seriesTestDesc, prometheus.CounterValue)
	for _, v := range []string{"a", "a b", `q"uote`, `back\slash`, "new\nline", `\n`, `\"`, "", "ünïcode", `end\`} {
		m := c.Metric(v, 1, func() []string { return []string{v, "x"} })
		if _, _, ok := renderedOf(m); !ok {
			t.Fatalf("%q: not rendered", v)
		}
		var got dto.Metric
		if err := m.Write(&got); err != nil {
			t.Fatal(err)
		}
		want := prometheus.MakeLabelPairs(seriesTestDesc, []string{v, "x"})
		if !slices.EqualFunc(got.Label, want, func(a, b *dto.LabelPair) bool {
			return a.GetName() == b.GetName() && a.GetValue() == b.GetValue()
		}) {
			t.Errorf("%q: labels %v, want %v", v, got.Label, want)
		}
		if got.GetCounter().GetValue() != 1 {
			t.Errorf("%q: value %v", v, got.GetCounter().GetValue())
		}
	}
}

// compareSeries orders by label values as a registry does, not by the
// escaped text: "a" before "a b" (as text `a"` after `a `), "a\n" before
// `a\` (as text `a\n` after `a\\`).
func TestCompareSeriesByValues(t *testing.T) {
	render := func(values ...string) []byte {
		return renderSeries("x", prometheus.MakeLabelPairs(prometheus.NewDesc("x", "x", []string{"a", "b"}, nil), values))
	}
	for _, c := range []struct {
		a, b []string
		want int
	}{
		{[]string{"a", "z"}, []string{"a b", "a"}, -1},
		{[]string{"a\n", "z"}, []string{"a\\", "a"}, -1}, // '\n' < '\\' by value, 'n' > '\\' as text
		{[]string{`a"`, "z"}, []string{"a!", "a"}, 1},
		{[]string{"a", "b"}, []string{"a", "c"}, -1},
		{[]string{"a", "b"}, []string{"a", "b"}, 0},
	} {
		if got := compareSeries(render(c.a...), render(c.b...)); sign(got) != c.want {
			t.Errorf("compareSeries(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	if got := compareSeries([]byte("x"), render("a", "b")); got >= 0 {
		t.Errorf("a series without labels after one with two: %d", got)
	}
}

func sign(n int) int { return min(max(n, -1), 1) }
