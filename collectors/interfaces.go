package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/internal/hostview"
)

// Attacher is a collector's programs per interface of the agent's network
// namespace, each with the value it was attached by (*loader.Attachments).
type Attacher[T comparable] interface {
	// Attach puts the programs on an interface, or records a new value
	// for one that has them.
	Attach(ifindex int, v T) error
	// Detach takes them off.
	Detach(ifindex int)
	// Attached returns the interfaces with programs and their values.
	Attached() map[int]T
	// Each calls f with every interface that has programs and its value.
	Each(f func(ifindex int, v T))
	// Hooks counts the interfaces attached by each hook (tc, tcx).
	Hooks() map[string]int
	// EndStartup says the start-up inventory is attached (logf reports
	// interfaces whose start-up attachment could not be improved on).
	EndStartup(logf func(ifindex int, err error))
}

// InterfaceOptions says which interfaces Interfaces attaches, and how.
type InterfaceOptions[T comparable] struct {
	// Want says whether the programs go on a link, and with what value.
	Want func(hostview.Link) (T, bool)
	// What names the programs in the log ("DNS", "fragment").
	What string
}

// Interfaces keeps a collector's programs on the interfaces of the
// agent's network namespace that it wants, following the host view's link
// events: one pass over the link view per batch of events (they
// coalesce), so thousands of new interfaces cost one pass, not thousands.
type Interfaces[T comparable] struct {
	net    HostNet
	log    *slog.Logger
	a      Attacher[T]
	opts   InterfaceOptions[T]
	cancel context.CancelFunc
	done   chan struct{}

	failures atomic.Uint64
	wanted   atomic.Int64
	lastErr  atomic.Value // string: the last attach failure, for Err
}

// NewInterfaces prepares to follow deps.Net's links into a (Start).
func NewInterfaces[T comparable](deps Deps, a Attacher[T], opts InterfaceOptions[T]) *Interfaces[T] {
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Interfaces[T]{net: deps.Net, log: log, a: a, opts: opts}
}

// Start attaches to every wanted interface, ends the attacher's start-up,
// and follows the links until ctx ends or Close.
func (f *Interfaces[T]) Start(ctx context.Context) {
	// Subscribed before the first pass: a link that comes during it is
	// not missed.
	changed, unsubscribe := f.net.Subscribe()
	f.pass(true)
	f.a.EndStartup(func(ifindex int, err error) {
		f.log.Warn("interface stays on its start-up tc filter, where the "+f.opts.What+" programs still count", "ifindex", ifindex, "err", err)
	})
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan struct{})
	go func() {
		defer close(f.done)
		defer unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				f.pass(false)
			}
		}
	}()
}

// Close stops following the links (the programs stay on: the attacher's
// owner takes them off).
func (f *Interfaces[T]) Close() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	<-f.done
}

// pass puts the programs on every wanted interface that has none, records
// the new value of those whose value changed, and takes them off those no
// longer wanted or gone, the attaches and detaches overlapped (one after
// another, 1,001 interfaces took 7 s at start-up, past the agent's
// readiness). On the first pass, one attach goes alone before the others:
// it settles whether the kernel has TCX (loader.AttachAuto), so that the
// rest take the right path at once.
func (f *Interfaces[T]) pass(first bool) {
	links := f.net.Links()
	type wanted struct {
		l hostview.Link
		v T
	}
	want := make(map[int]wanted, len(links))
	for _, l := range links {
		if v, ok := f.opts.Want(l); ok {
			want[l.Index] = wanted{l, v}
		}
	}
	have := f.a.Attached()
	var jobs []func()
	for idx := range have {
		if _, ok := want[idx]; !ok {
			jobs = append(jobs, func() { f.a.Detach(idx) })
		}
	}
	for idx, w := range want {
		if v, ok := have[idx]; ok && v == w.v {
			continue
		}
		if first {
			first = false
			f.attach(w.l, w.v)
			continue
		}
		jobs = append(jobs, func() { f.attach(w.l, w.v) })
	}
	loader.Overlap(jobs)
	f.wanted.Store(int64(len(want)))
}

func (f *Interfaces[T]) attach(l hostview.Link, v T) {
	err := f.a.Attach(l.Index, v)
	if err == nil {
		return
	}
	// An interface deleted while we attached is not a failure: the next
	// pass drops it from the wanted set.
	if _, still := f.net.ByIndex(l.Index); !still || errors.Is(err, unix.ENODEV) {
		return
	}
	f.failures.Add(1)
	f.lastErr.Store(err.Error())
	f.log.Warn("cannot attach the "+f.opts.What+" programs to an interface", "interface", l.Name, "err", err)
}

// Attached returns the interfaces with programs and their values.
func (f *Interfaces[T]) Attached() map[int]T { return f.a.Attached() }

// Each calls fn with every interface that has the programs and its value.
func (f *Interfaces[T]) Each(fn func(ifindex int, v T)) { f.a.Each(fn) }

// Hooks counts the interfaces attached by each hook.
func (f *Interfaces[T]) Hooks() map[string]int { return f.a.Hooks() }

// Failures counts the attaches that failed on interfaces that were still
// there.
func (f *Interfaces[T]) Failures() uint64 { return f.failures.Load() }

// Err says, when interfaces are wanted and none has the programs because
// attaches failed, that the collector counts nothing: it is down, not
// quietly flat. attached is how many interfaces have them.
func (f *Interfaces[T]) Err(attached int) error {
	if attached > 0 || f.wanted.Load() == 0 || f.failures.Load() == 0 {
		return nil
	}
	last, _ := f.lastErr.Load().(string)
	return fmt.Errorf("no interface attached (%d failures, last: %s)", f.failures.Load(), last)
}

// FixedInterfaces is an Interfaces that follows nothing, over interfaces
// attached by hook with these values: for golden tests.
func FixedInterfaces[T comparable](attached map[int]T, hook string) *Interfaces[T] {
	return &Interfaces[T]{a: fixedAttacher[T]{attached: attached, hook: hook}}
}

type fixedAttacher[T comparable] struct {
	attached map[int]T
	hook     string
}

func (fixedAttacher[T]) Attach(int, T) error   { return nil }
func (fixedAttacher[T]) Detach(int)            {}
func (f fixedAttacher[T]) Attached() map[int]T { return f.attached }
func (f fixedAttacher[T]) Each(fn func(int, T)) {
	for i, v := range f.attached {
		fn(i, v)
	}
}
func (fixedAttacher[T]) EndStartup(func(int, error)) {}
func (f fixedAttacher[T]) Hooks() map[string]int {
	if len(f.attached) == 0 {
		return map[string]int{}
	}
	return map[string]int{f.hook: len(f.attached)}
}
