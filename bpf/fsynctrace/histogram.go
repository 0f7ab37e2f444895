package fsynctrace

import "time"

// bounds of the fsync histograms, the tracer's and the active probe's
// (collectors/fsynctrace and collectors/fsyncprobe both use Histogram, so
// the two read side by side; it lives beside the kernel side that takes
// the same bounds, not in either collector), in seconds: 125, 250 and 500 µs
// (an NVMe fdatasync is well under a millisecond), then etcd's own WAL
// fsync buckets (1 ms doubling, 14 buckets, up to 8.192 s) with an edge at
// exactly 10 ms inserted, since etcd's buckets jump from 8 to 16 ms and
// "p99 below 10 ms" could otherwise only be read by interpolation.
var bounds = [NumBounds]time.Duration{
	125 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	1 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond,
	10 * time.Millisecond,
	16 * time.Millisecond, 32 * time.Millisecond, 64 * time.Millisecond, 128 * time.Millisecond,
	256 * time.Millisecond, 512 * time.Millisecond, 1024 * time.Millisecond, 2048 * time.Millisecond,
	4096 * time.Millisecond, 8192 * time.Millisecond,
}

// Histogram is counts per bound (index NumBounds: above the last), plus the
// sum, turned into Prometheus' cumulative form on demand.
type Histogram struct {
	counts [NumBounds + 1]uint64
	sum    time.Duration
}

// Observe counts one sample.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(bounds) && d > bounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += d
}

// AddBucket adds n samples the kernel counted in bucket i (NumBounds: above
// the last bound); an index out of range is ignored.
func (h *Histogram) AddBucket(i uint32, n uint64) {
	if int(i) < len(h.counts) {
		h.counts[i] += n
	}
}

// AddSum adds to the sum of the samples (the kernel keeps it apart).
func (h *Histogram) AddSum(d time.Duration) { h.sum += d }

// Cumulative returns the count, the sum in seconds and the cumulative
// buckets keyed by upper bound in seconds.
func (h *Histogram) Cumulative() (uint64, float64, map[float64]uint64) {
	buckets := make(map[float64]uint64, len(bounds))
	var n uint64
	for i, b := range bounds {
		n += h.counts[i]
		buckets[b.Seconds()] = n
	}
	n += h.counts[len(bounds)]
	return n, h.sum.Seconds(), buckets
}

// BoundsNS are the bounds in nanoseconds, as Options.Bounds takes them.
func BoundsNS() [NumBounds]uint64 {
	var out [NumBounds]uint64
	for i, b := range bounds {
		out[i] = uint64(b.Nanoseconds())
	}
	return out
}
