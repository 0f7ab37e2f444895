package dns

import (
	"context"
	"maps"
	"sort"
	"time"

	bpfdns "github.com/netsonde/netsonde/bpf/dns"
	"github.com/netsonde/netsonde/internal/hostview"
)

// sweeper closes, every interval, the queries older than the timeout. A
// query is a timeout at most one interval after its deadline.
func (c *collector) sweeper(ctx context.Context, every time.Duration) {
	defer close(c.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweep()
		}
	}
}

func (c *collector) sweep() {
	sw, err := c.probe.Sweep(c.timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepErr = err
	if err != nil {
		c.deps.Logger.Warn("sweep of in-flight DNS queries failed", "err", err)
		return
	}
	for owner, n := range sw.ByOwner {
		c.swept[owner] += n
	}
	if c.topNames > 0 {
		for h, n := range sw.ByName {
			c.nameTimeouts[h] += n
		}
		c.nameTimeouts = Prune(c.nameTimeouts, c.maxNames())
	}
	c.live = sw.Live
	counts, err := c.probe.Read()
	if err != nil {
		return
	}
	c.forgetGone(counts)
}

// forgetGone deletes the counters of owners gone for forgetAfter:
// network namespaces as the host network view sees them, and with the TC
// hook, interfaces as the link view does. It looks at most every few
// seconds. Called with c.mu held.
func (c *collector) forgetGone(counts bpfdns.Counts) {
	now := c.deps.Now()
	if c.deps.Net == nil || now.Sub(c.lastCheck) < min(c.forgetAfter/2, 10*time.Second) {
		return
	}
	c.lastCheck = now
	owners := counts.Owners()
	for k := range c.swept {
		owners[k] = true
	}
	namespaces := counts.DropNamespaces()
	if !c.tc {
		maps.Copy(namespaces, owners)
		owners = nil
	}
	// gone: owners (the flow-keyed counters) and namespaces (the drop
	// counter, and with the cgroup hook the owners too) to forget. With
	// the TC hook an owner is an interface index and a namespace a
	// cookie: both small numbers, never mixed up.
	gone, goneNs := map[uint64]bool{}, map[uint64]bool{}
	// missing says whether a key not present now has been missing for
	// forgetAfter, and notes since when it is.
	missing := func(key uint64, present bool, since map[uint64]time.Time, out map[uint64]bool) {
		if present {
			delete(since, key)
			return
		}
		t, ok := since[key]
		if !ok {
			since[key] = now
			return
		}
		if now.Sub(t) >= c.forgetAfter {
			out[key] = true
			delete(since, key)
		}
	}
	snap := c.deps.Net.Snapshot()
	for ns := range namespaces {
		_, state, _ := snap.Lookup(ns)
		if state == hostview.Unknown && ns != 0 && ns != c.own {
			c.deps.Net.Miss(ns)
		}
		missing(ns, ns == 0 || ns == c.own || state == hostview.Present, c.missing, goneNs)
	}
	if !c.tc {
		maps.Copy(gone, goneNs)
	}
	for idx := range owners {
		_, present := c.deps.Net.ByIndex(int(idx))
		missing(idx, idx == 0 || present, c.missingIface, gone)
	}
	for k := range gone {
		delete(c.swept, k)
		delete(c.ifacePod, k)
	}
	if len(gone) > 0 || len(goneNs) > 0 {
		c.probe.Forget(counts, gone, goneNs)
		c.deps.Logger.Debug("forgot DNS counters of vanished pods", "owners", len(gone), "namespaces", len(goneNs))
	}
}

// Prune keeps the max largest counts of m when it has more (half of max,
// so that it is not pruned again at the next sweep), the bounded table of
// the conntrack breakdown's top sources.
func Prune(m map[uint64]uint64, max int) map[uint64]uint64 {
	if len(m) <= max {
		return m
	}
	type kv struct{ k, v uint64 }
	all := make([]kv, 0, len(m))
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].k < all[j].k
	})
	out := make(map[uint64]uint64, max/2)
	for _, e := range all[:max/2] {
		out[e.k] = e.v
	}
	return out
}

// TopFailing returns the n name hashes with the most timeouts plus
// NXDOMAIN answers, most first (ties: by hash, for a stable order).
func TopFailing(timeouts, nxdomain map[uint64]uint64, n int) []uint64 {
	score := map[uint64]uint64{}
	for h, v := range timeouts {
		score[h] += v
	}
	for h, v := range nxdomain {
		score[h] += v
	}
	hs := make([]uint64, 0, len(score))
	for h, v := range score {
		if v > 0 {
			hs = append(hs, h)
		}
	}
	sort.Slice(hs, func(i, j int) bool {
		if score[hs[i]] != score[hs[j]] {
			return score[hs[i]] > score[hs[j]]
		}
		return hs[i] < hs[j]
	})
	if len(hs) > n {
		hs = hs[:n]
	}
	return hs
}
