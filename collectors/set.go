package collectors

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Enabled is a collector the user switched on, with its flags parsed.
type Enabled struct {
	Name    string
	Help    string
	Factory Factory
}

// State is what the landing page and /readyz know of one collector.
type State struct {
	Name    string
	Help    string
	Started bool   // Start has returned (successfully or not)
	Up      bool   // working as of the last start or scrape
	Reason  string // empty while up
	Error   string // the full error behind Reason
}

var (
	upDesc = prometheus.NewDesc(Namespace+"_collector_up",
		"Whether the collector is working (1) or down (0); reason says why it is down.",
		[]string{"collector", "reason"}, nil)
	durationDesc = prometheus.NewDesc(Namespace+"_collector_duration_seconds",
		"How long the collector took to collect during this scrape.",
		[]string{"collector"}, nil)
	timeoutDesc = prometheus.NewDesc(Namespace+"_collector_timeout_total",
		"Scrapes the collector did not finish before the scrape's deadline (X-Prometheus-Scrape-Timeout-Seconds, less a margin); its up is 0 with reason=\"timeout\" for those scrapes.",
		[]string{"collector"}, nil)
	collectionsDesc = prometheus.NewDesc(Namespace+"_collector_collections_total",
		"Times the collector was called: scrapes that overlap share one collection, so with several scrapers this is below the scrapes served.",
		[]string{"collector"}, nil)
)

// DefaultCollectTimeout bounds a collection when the scraper gives no
// deadline: Prometheus' own default scrape timeout.
const DefaultCollectTimeout = 10 * time.Second

type member struct {
	spec Enabled

	mu      sync.Mutex
	c       Collector // nil until started, and if the start failed
	started bool
	reason  string
	err     error
	// latest is the member's last collection, in flight or finished.
	// Scrapes share it (see collectOne), and the collector is never
	// called while it is in flight: a collector stuck for good costs one
	// goroutine, not one per scrape.
	latest *run

	timeouts    atomic.Uint64
	collections atomic.Uint64
}

// run is one call of a collector's Collect, shared by every scrape that
// overlaps it. Its results are written, with finished, under the member's
// mu before done is closed; scrapes read finished under mu (is it still in
// flight?) and the results only after done.
type run struct {
	began    time.Time
	done     chan struct{}
	cancel   context.CancelFunc
	metrics  []prometheus.Metric
	err      error
	took     time.Duration
	finished time.Time

	// Under the member's mu.
	waiters int
	// abandoned is set when every scrape waiting for the run gave up at
	// its deadline before it finished: its context is cancelled then,
	// and what it returns is served to no scrape, since a collector
	// whose context ended may return a partial page without an error.
	abandoned bool
}

// Set runs a group of collectors: it starts them, collects them in parallel
// on each scrape and reports each one's health. It is a prometheus.Collector.
type Set struct {
	logger  *slog.Logger
	members []*member
	ready   chan struct{}
}

// NewSet prepares the collectors; Start starts them.
func NewSet(logger *slog.Logger, enabled []Enabled) *Set {
	s := &Set{logger: logger, ready: make(chan struct{})}
	for _, e := range enabled {
		s.members = append(s.members, &member{spec: e})
	}
	return s
}

// Start starts every collector concurrently and returns when all have
// tried. A collector that fails is logged and reported down; the others are
// not affected. ctx bounds the collectors' background work.
func (s *Set) Start(ctx context.Context, deps Deps) {
	var wg sync.WaitGroup
	for _, m := range s.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := deps
			d.Logger = deps.Logger.With("collector", m.spec.Name)
			begin := time.Now()
			c, err := startOne(ctx, m.spec.Factory, d)
			m.mu.Lock()
			defer m.mu.Unlock()
			m.started = true
			if err != nil {
				m.reason = ReasonOf(err, "start_failed")
				m.err = err
				s.logger.Warn("collector is down", "collector", m.spec.Name, "reason", m.reason, "err", err)
				return
			}
			m.c = c
			s.logger.Info("collector started", "collector", m.spec.Name, "took", time.Since(begin).Round(time.Millisecond))
		}()
	}
	wg.Wait()
	close(s.ready)
}

// startOne turns a panic in a collector's start into an error, so one
// collector's bug cannot take the agent down.
func startOne(ctx context.Context, f Factory, deps Deps) (c Collector, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, Down("panic", errors.New("start panicked"))
			deps.Logger.Error("collector start panicked", "panic", r)
		}
	}()
	return f(ctx, deps)
}

// Ready is closed once every collector has been started or has failed.
func (s *Set) Ready() <-chan struct{} { return s.ready }

// States reports every collector's state, sorted by name.
func (s *Set) States() []State {
	out := make([]State, 0, len(s.members))
	for _, m := range s.members {
		m.mu.Lock()
		st := State{Name: m.spec.Name, Help: m.spec.Help, Started: m.started, Reason: m.reason}
		st.Up = m.started && m.c != nil && m.reason == ""
		if m.err != nil {
			st.Error = m.err.Error()
		}
		m.mu.Unlock()
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Describe sends nothing: collectors' label sets change with the node, so
// the Set is registered as an unchecked collector.
func (s *Set) Describe(chan<- *prometheus.Desc) {}

// Collect is CollectContext with DefaultCollectTimeout, for registries that
// give no deadline.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCollectTimeout)
	defer cancel()
	s.CollectContext(ctx, ch)
}

// CollectContext is CollectSince for a scrape arriving now.
func (s *Set) CollectContext(ctx context.Context, ch chan<- prometheus.Metric) {
	s.CollectSince(ctx, time.Now(), ch)
}

// CollectSince serves a scrape that arrived at since: every started
// collector in its own goroutine, as node_exporter does, so one slow
// collector does not serialise the rest.
//
// Overlapping scrapes share collections. A collector's collection still
// in flight when the scrape gets to it, or one that finished after since
// (the scrape was waiting for a --web.max-requests slot, say), is served
// as it is; otherwise the collector is called anew. So a page is never
// older than the moment its scrape arrived, a lone scraper always gets a
// fresh collection, and N scrapes at once cost one collection and N
// encodings, not N collections.
//
// It returns by ctx's deadline whatever the collectors do: a collector
// whose collection has not finished by then is reported down with
// reason="timeout" and counted in netsonde_collector_timeout_total, and
// the scrape answers in time with every other collector's metrics. The
// collection goes on for the other scrapes waiting for it, and is
// cancelled once none is left.
func (s *Set) CollectSince(ctx context.Context, since time.Time, ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for _, m := range s.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.collectOne(ctx, since, m, ch)
		}()
	}
	wg.Wait()
}

// WithContext is the Set as a prometheus.Collector for one scrape that
// arrived at since and ends at ctx's deadline: the HTTP handler registers
// one per scrape.
func (s *Set) WithContext(ctx context.Context, since time.Time) prometheus.Collector {
	return setWithContext{s, ctx, since}
}

type setWithContext struct {
	s     *Set
	ctx   context.Context
	since time.Time
}

func (c setWithContext) Describe(chan<- *prometheus.Desc) {}
func (c setWithContext) Collect(ch chan<- prometheus.Metric) {
	c.s.CollectSince(c.ctx, c.since, ch)
}

func (s *Set) collectOne(ctx context.Context, since time.Time, m *member, ch chan<- prometheus.Metric) {
	name := m.spec.Name
	for {
		m.mu.Lock()
		c, started, reason := m.c, m.started, m.reason
		if !started || c == nil {
			m.mu.Unlock()
			if !started {
				reason = "starting"
			}
			ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, name, reason)
			return
		}
		r := m.latest
		switch {
		case r != nil && !r.abandoned && (r.finished.IsZero() || r.finished.After(since)):
			// In flight, or finished after this scrape arrived: share it.
		case r != nil && r.finished.IsZero():
			// Abandoned and still in Collect: wait for it to return
			// before calling the collector again.
			m.mu.Unlock()
			select {
			case <-r.done:
				continue
			case <-ctx.Done():
				s.timedOut(m, ch, time.Since(r.began))
				return
			}
		default:
			r = s.begin(ctx, m, c)
		}
		r.waiters++
		m.mu.Unlock()

		select {
		case <-r.done:
			m.mu.Lock()
			r.waiters--
			m.mu.Unlock()
			s.serve(m, r, ch)
		case <-ctx.Done():
			m.mu.Lock()
			r.waiters--
			if r.waiters == 0 && r.finished.IsZero() {
				r.abandoned = true
				r.cancel()
			}
			m.mu.Unlock()
			s.timedOut(m, ch, time.Since(r.began))
		}
		return
	}
}

// begin calls the collector in the background, its metrics kept for every
// scrape that shares the run. The run's context carries the values of the
// scrape that began it but not its deadline: it ends when the last scrape
// waiting for it gives up. Called with m.mu held.
func (s *Set) begin(ctx context.Context, m *member, c Collector) *run {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &run{began: time.Now(), done: make(chan struct{}), cancel: cancel}
	m.latest = r
	m.collections.Add(1)
	own := make(chan prometheus.Metric, 64)
	errc := make(chan error, 1)
	go func() {
		errc <- collectSafely(runCtx, c, own)
		close(own)
	}()
	go func() {
		var metrics []prometheus.Metric
		for metric := range own {
			metrics = append(metrics, metric)
		}
		err := <-errc
		cancel()
		now := time.Now()
		m.mu.Lock()
		defer m.mu.Unlock()
		r.metrics, r.err, r.took, r.finished = metrics, err, now.Sub(r.began), now
		close(r.done)
		if r.abandoned {
			return // its scrapes reported it timed out; nobody reads it
		}
		if err != nil {
			m.reason, m.err = ReasonOf(err, "collect_failed"), err
			s.logger.Warn("collect failed", "collector", m.spec.Name, "reason", m.reason, "err", err)
			return
		}
		if m.reason != "" {
			s.logger.Info("collector recovered", "collector", m.spec.Name)
		}
		m.reason, m.err = "", nil
	}()
	return r
}

// serve sends a finished run's metrics and the collector's health.
func (s *Set) serve(m *member, r *run, ch chan<- prometheus.Metric) {
	name := m.spec.Name
	for _, metric := range r.metrics {
		ch <- metric
	}
	ch <- prometheus.MustNewConstMetric(durationDesc, prometheus.GaugeValue, r.took.Seconds(), name)
	ch <- prometheus.MustNewConstMetric(timeoutDesc, prometheus.CounterValue, float64(m.timeouts.Load()), name)
	ch <- prometheus.MustNewConstMetric(collectionsDesc, prometheus.CounterValue, float64(m.collections.Load()), name)
	if r.err != nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, name, ReasonOf(r.err, "collect_failed"))
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1, name, "")
}

// timedOut reports a collector that did not finish before the scrape's
// deadline; took is how long its collection had been running. The reason is not kept as the collector's state: the
// next scrape that finishes in time reports it up again.
func (s *Set) timedOut(m *member, ch chan<- prometheus.Metric, took time.Duration) {
	name := m.spec.Name
	n := m.timeouts.Add(1)
	s.logger.Warn("collector overran the scrape's deadline", "collector", name, "took", took.Round(time.Millisecond), "timeouts", n)
	ch <- prometheus.MustNewConstMetric(durationDesc, prometheus.GaugeValue, took.Seconds(), name)
	ch <- prometheus.MustNewConstMetric(timeoutDesc, prometheus.CounterValue, float64(n), name)
	ch <- prometheus.MustNewConstMetric(collectionsDesc, prometheus.CounterValue, float64(m.collections.Load()), name)
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, name, "timeout")
}

func collectSafely(ctx context.Context, c Collector, ch chan<- prometheus.Metric) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Down("panic", errors.New("collect panicked"))
		}
	}()
	return c.Collect(ctx, ch)
}

// Close closes every started collector and returns their errors joined.
// It waits a moment for Start to finish, so nothing started late is
// leaked, but not for ever: a collector stuck in its start must not stop
// the agent from shutting down.
func (s *Set) Close() error {
	select {
	case <-s.ready:
	case <-time.After(time.Second):
		s.logger.Warn("collectors still starting at shutdown; closing the others")
	}
	var errs []error
	for _, m := range s.members {
		m.mu.Lock()
		c := m.c
		m.c = nil
		m.mu.Unlock()
		if c == nil {
			continue
		}
		begin := time.Now()
		if err := c.Close(); err != nil {
			errs = append(errs, errors.Join(errors.New("close "+m.spec.Name), err))
		}
		// What a slow shutdown spent its time on (detaching programs
		// from a thousand interfaces takes seconds).
		s.logger.Debug("collector closed", "collector", m.spec.Name, "took", time.Since(begin).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}
