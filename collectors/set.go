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

	// running is set while a Collect call is in flight. A collector that
	// overran a scrape may still be running at the next one; it is not
	// called again until it returns, so a collector stuck for good costs
	// one goroutine, not one per scrape.
	running  atomic.Bool
	timeouts atomic.Uint64
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

// CollectContext runs every started collector in its own goroutine, as
// node_exporter does, so one slow collector does not serialise the rest.
// It returns by ctx's deadline whatever the collectors do: a collector
// still running then is reported down with reason="timeout" and counted in
// netsonde_collector_timeout_total, and what it sends afterwards is
// dropped, so the scrape answers in time with every other collector's
// metrics.
func (s *Set) CollectContext(ctx context.Context, ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for _, m := range s.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.collectOne(ctx, m, ch)
		}()
	}
	wg.Wait()
}

// WithContext is the Set as a prometheus.Collector whose collections end
// at ctx's deadline: the HTTP handler registers one per scrape.
func (s *Set) WithContext(ctx context.Context) prometheus.Collector {
	return setWithContext{s, ctx}
}

type setWithContext struct {
	s   *Set
	ctx context.Context
}

func (c setWithContext) Describe(chan<- *prometheus.Desc) {}
func (c setWithContext) Collect(ch chan<- prometheus.Metric) {
	c.s.CollectContext(c.ctx, ch)
}

func (s *Set) collectOne(ctx context.Context, m *member, ch chan<- prometheus.Metric) {
	name := m.spec.Name
	m.mu.Lock()
	c, started, reason := m.c, m.started, m.reason
	m.mu.Unlock()
	if !started {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, name, "starting")
		return
	}
	if c == nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, name, reason)
		return
	}
	if !m.running.CompareAndSwap(false, true) {
		// Still in the Collect of a scrape it overran.
		s.timedOut(m, ch, 0)
		return
	}
	begin := time.Now()
	// The collector sends into its own channel, forwarded to ch until the
	// deadline: ch belongs to the registry, which closes it once
	// CollectContext returns, so a late send there would panic.
	own := make(chan prometheus.Metric, 64)
	errc := make(chan error, 1)
	go func() {
		errc <- collectSafely(ctx, c, own)
		close(own)
	}()
forward:
	for {
		select {
		case metric, ok := <-own:
			if !ok {
				break forward
			}
			ch <- metric
		case <-ctx.Done():
			go func() {
				for range own {
				}
				m.running.Store(false)
			}()
			s.timedOut(m, ch, time.Since(begin))
			return
		}
	}
	err := <-errc
	m.running.Store(false)
	took := time.Since(begin).Seconds()
	ch <- prometheus.MustNewConstMetric(durationDesc, prometheus.GaugeValue, took, name)
	ch <- prometheus.MustNewConstMetric(timeoutDesc, prometheus.CounterValue, float64(m.timeouts.Load()), name)

	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.reason, m.err = ReasonOf(err, "collect_failed"), err
		s.logger.Warn("collect failed", "collector", name, "reason", m.reason, "err", err)
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, name, m.reason)
		return
	}
	if m.reason != "" {
		s.logger.Info("collector recovered", "collector", name)
	}
	m.reason, m.err = "", nil
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1, name, "")
}

// timedOut reports a collector that did not finish before the scrape's
// deadline (took is 0 when it was not even called, still busy with an
// earlier scrape). The reason is not kept as the collector's state: the
// next scrape that finishes in time reports it up again.
func (s *Set) timedOut(m *member, ch chan<- prometheus.Metric, took time.Duration) {
	name := m.spec.Name
	n := m.timeouts.Add(1)
	s.logger.Warn("collector overran the scrape's deadline", "collector", name, "took", took.Round(time.Millisecond), "timeouts", n)
	if took > 0 {
		ch <- prometheus.MustNewConstMetric(durationDesc, prometheus.GaugeValue, took.Seconds(), name)
	}
	ch <- prometheus.MustNewConstMetric(timeoutDesc, prometheus.CounterValue, float64(n), name)
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
		if err := c.Close(); err != nil {
			errs = append(errs, errors.Join(errors.New("close "+m.spec.Name), err))
		}
	}
	return errors.Join(errs...)
}
