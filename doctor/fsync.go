package doctor

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// bucketDelta is a histogram's buckets over the run: the second scrape's
// cumulative counts minus the first's.
type bucket struct {
	upper float64
	count float64 // cumulative
}

func histogramDelta(after *dto.Metric, before *dto.Metric) (buckets []bucket, count float64) {
	h := after.GetHistogram()
	if h == nil {
		return nil, 0
	}
	prev := map[float64]float64{}
	var prevCount float64
	if before != nil && before.GetHistogram() != nil {
		for _, b := range before.GetHistogram().GetBucket() {
			prev[b.GetUpperBound()] = float64(b.GetCumulativeCount())
		}
		prevCount = float64(before.GetHistogram().GetSampleCount())
	}
	count = float64(h.GetSampleCount()) - prevCount
	if count < 0 { // the agent restarted between the scrapes
		prev, count = map[float64]float64{}, float64(h.GetSampleCount())
	}
	for _, b := range h.GetBucket() {
		buckets = append(buckets, bucket{b.GetUpperBound(), float64(b.GetCumulativeCount()) - prev[b.GetUpperBound()]})
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].upper < buckets[j].upper })
	if len(buckets) == 0 || !math.IsInf(buckets[len(buckets)-1].upper, 1) {
		buckets = append(buckets, bucket{math.Inf(1), count})
	}
	return buckets, count
}

// quantile is Prometheus' histogram_quantile over classic buckets: linear
// interpolation inside the bucket holding the rank, the last finite bound
// when the rank falls in +Inf.
func quantile(q float64, buckets []bucket, count float64) float64 {
	if count <= 0 || len(buckets) == 0 {
		return math.NaN()
	}
	rank := q * count
	i := sort.Search(len(buckets), func(i int) bool { return buckets[i].count >= rank })
	if i == len(buckets) {
		i = len(buckets) - 1
	}
	if math.IsInf(buckets[i].upper, 1) {
		if i == 0 {
			return math.NaN()
		}
		return buckets[i-1].upper
	}
	start, below := 0.0, 0.0
	if i > 0 {
		start, below = buckets[i-1].upper, buckets[i-1].count
	} else if buckets[0].upper <= 0 {
		return buckets[0].upper
	}
	in := buckets[i].count - below
	if in <= 0 {
		return buckets[i].upper
	}
	return start + (buckets[i].upper-start)*(rank-below)/in
}

func checkFsync(o Observation, r Rules) []Finding {
	var out []Finding
	for _, c := range []struct {
		metric, alert, id string
		labels            []string
	}{
		{"netsonde_disk_fsync_duration_seconds", alertDiskFsync, "disk-fsync-slow", []string{"path"}},
		{"netsonde_process_fsync_duration_seconds", alertProcessFsync, "process-fsync-slow", []string{"comm", "device"}},
	} {
		a := r[c.alert]
		for _, p := range o.pairs(c.metric, nil) {
			s := p.after
			var bm *dto.Metric
			if p.before != nil {
				bm = p.before.Metric
			}
			buckets, count := histogramDelta(s.Metric, bm)
			if count <= 0 {
				continue
			}
			// The rule's quantile is 0.99 (etcd's guidance is a p99).
			p99 := quantile(0.99, buckets, count)
			if math.IsNaN(p99) || !a.Exceeds(p99) {
				continue
			}
			var subj []string
			for _, l := range c.labels {
				subj = append(subj, s.Label(l))
			}
			f := r.finding(c.id, c.alert, strings.Join(subj, " "))
			f.Summary = fmt.Sprintf("fsync p99 %s on %s, above etcd's %s", fmtSeconds(p99), strings.Join(subj, " "), fmtSeconds(a.Threshold))
			f.Evidence = append(f.Evidence,
				fmt.Sprintf("%s: %s in %.1fs, p99 %s %s %s", SeriesString(c.metric, s.Labels), counted(count, "fsync"), o.Elapsed, fmtSeconds(p99), a.Op, fmtSeconds(a.Threshold)))
			f.Why, f.Next = advice[c.id].Why, advice[c.id].Next
			out = append(out, f)
		}
	}
	return out
}

func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}
