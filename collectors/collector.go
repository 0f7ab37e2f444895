// Package collectors is the framework every netsonde collector plugs into:
// the Collector interface, the Spec a collector registers with, and the Set
// that starts the enabled collectors, runs them on every scrape and reports
// each one's health as netsonde_collector_up and _duration_seconds.
package collectors

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/internal/dropreason"
	"github.com/netsonde/netsonde/internal/hostview"
)

// Namespace is the prefix of every metric netsonde exports.
const Namespace = "netsonde"

// Collector is one concern (drops, conntrack, MTU, ...). It is created and
// started by its Factory, asked for metrics on every scrape, and closed once.
type Collector interface {
	// Collect sends the collector's current metrics. It must not block on
	// anything that grows with traffic or table size; an error marks the
	// collector down for this scrape (metrics already sent are kept).
	Collect(ctx context.Context, ch chan<- prometheus.Metric) error
	// Close releases everything the collector took: BPF links and maps,
	// sockets, goroutines, files.
	Close() error
}

// Factory builds and starts a collector. ctx lives as long as the agent, so
// background goroutines may use it. An error means the collector cannot
// work here; wrap it with Down to give the reason label a stable value.
type Factory func(ctx context.Context, deps Deps) (Collector, error)

// Spec is a collector's line in the agent's table.
type Spec struct {
	// Name is the collector's name: its --collector.NAME flag, its
	// collector label, and the prefix of its own flags.
	Name string
	// Help is shown in --help and on the landing page.
	Help string
	// DefaultEnabled is the default of --collector.NAME.
	DefaultEnabled bool
	// Metrics are the prefixes of the names of the metrics it exports
	// (the longest matching prefix names a series' collector).
	Metrics []string
	// Budget is the most series it exports on a node with n interfaces
	// and p pods, with its default flags (README, "Series budget";
	// agent's TestSeriesBudget enforces it at 1,001 and 110).
	Budget func(n, p int) int
	// Setup registers the collector's own flags (named "NAME.something")
	// on app and returns the Factory, which reads them once they are parsed.
	Setup func(app *kingpin.Application) Factory
}

// Deps is what the agent gives every collector. Shared knowledge lives here,
// so collectors never reach into each other or into the HTTP layer; each
// piece is a small interface, so a collector's logic runs in a unit test
// with a fake of a few lines.
type Deps struct {
	Logger *slog.Logger
	// Net is the host's network as agent/hostnet keeps it: the agent's
	// links and the node's other namespaces. Nil when netlink is not
	// available.
	Net HostNet
	// Counters has the host view read socket and protocol counters inside
	// every namespace in its background refresh (their values are in
	// Net's snapshot). Nil without a view.
	Counters NetCounters
	// Pods attributes network namespaces, interfaces and addresses to pods.
	Pods cluster.Resolver
	// Clock tells the time (forgetting, rate limits).
	Clock Clock
	// Proc reads procfs (--path.procfs).
	Proc ProcFS
	// BTF is the kernel BTF the BPF collectors share while they start;
	// the agent releases it once they all have.
	BTF *loader.KernelBTF
	// DropReasons names the kernel's drop reasons, read from its BTF once
	// for every collector that labels drops (drops, dns). Nil reads them
	// for each caller.
	DropReasons *dropreason.Cache
	// SysPath is the root of sysfs.
	SysPath string
	// NodeName is this node's name in the cluster (--node-name), empty
	// when not given.
	NodeName string
}

// Now is Clock's time, or the system's when the Deps has no Clock.
func (d Deps) Now() time.Time {
	if d.Clock == nil {
		return time.Now()
	}
	return d.Clock.Now()
}

// HostNet is what collectors read of agent/hostnet. Every method answers
// from memory: it is called on the scrape path.
type HostNet interface {
	// Links returns the agent's namespace's links sorted by index
	// (shared: do not modify).
	Links() []hostview.Link
	// ByIndex returns the agent's namespace's link with this ifindex.
	ByIndex(ifindex int) (hostview.Link, bool)
	// Subscribe signals link changes (coalesced) until stop is called.
	Subscribe() (changed <-chan struct{}, stop func())
	// Snapshot is the node's other namespaces as last read.
	Snapshot() *hostview.Snapshot
	// Miss asks for a namespace (by cookie, as BPF keys carry it) the
	// snapshot does not know (yet) to be looked for, in the background.
	Miss(cookie uint64)
}

// NetCounters is the host view's reading of every namespace's own
// netstat, snmp and snmp6, as nstat names their counters.
type NetCounters interface {
	// WantCounters asks for these counters from the next refresh on
	// (names add up); each namespace's are in Snapshot().Namespaces().
	WantCounters(names ...string)
}

// Clock is the time source.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// ProcFS reads files under procfs.
type ProcFS interface {
	// ReadFile reads name, relative to procfs' root (e.g. "net/snmp").
	ReadFile(name string) ([]byte, error)
	// Root is procfs' root, for code that needs paths (a namespace file).
	Root() string
}

// ProcDir is procfs mounted at a directory.
type ProcDir string

// ReadFile implements ProcFS.
func (d ProcDir) ReadFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

// Root implements ProcFS.
func (d ProcDir) Root() string { return string(d) }

// DownError is a failure with a short, stable reason for the reason label
// (for example "no_btf", "not_permitted"), keeping the full error for logs.
type DownError struct {
	Reason string
	Err    error
}

func (e *DownError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *DownError) Unwrap() error { return e.Err }

// Down wraps err with a reason label value. Reasons are a small fixed
// vocabulary per collector: a label must never carry free text.
func Down(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &DownError{Reason: reason, Err: err}
}

// ReasonOf returns the reason label for err, or fallback when err carries none.
func ReasonOf(err error, fallback string) string {
	var de *DownError
	if errors.As(err, &de) {
		return de.Reason
	}
	return fallback
}

var bpfAttachedDesc = prometheus.NewDesc(Namespace+"_bpf_program_attached",
	"Whether the eBPF program is attached now (1) or not (0), and by which hook (tp_btf, raw_tp, fentry, tracepoint, tcx, tc, cgroup_skb; none when not attached).",
	[]string{"program", "hook"}, nil)

// BPFProgramAttached reports one logical eBPF program's attachment, as the
// loader recorded it: hook is the hook that won, or "none". Every collector
// that owns programs sends one per program on each scrape, so an alert on
// `== 0` names the program that is not attached.
func BPFProgramAttached(ch chan<- prometheus.Metric, program, hook string) {
	v := 1.0
	if hook == "" || hook == "none" {
		v, hook = 0, "none"
	}
	ch <- prometheus.MustNewConstMetric(bpfAttachedDesc, prometheus.GaugeValue, v, program, hook)
}

// BPFHooks reports every logical program of hooks (program → hook).
func BPFHooks(ch chan<- prometheus.Metric, hooks map[string]string) {
	for p, h := range hooks {
		BPFProgramAttached(ch, p, h)
	}
}

// BPFLoadDown wraps a failure to load or attach eBPF programs with the
// reason a user can act on: no_btf (the kernel publishes no BTF), not_permitted (no CAP_BPF/CAP_PERFMON, or a
// lockdown or verifier refusal), not_supported (the kernel lacks the program
// or map type), else fallback.
func BPFLoadDown(err error, fallback string) error {
	switch {
	case errors.Is(err, loader.ErrNoBTF):
		return Down("no_btf", err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return Down("not_permitted", err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return Down("not_supported", err)
	default:
		return Down(fallback, err)
	}
}

var bpfMapFullDesc = prometheus.NewDesc(Namespace+"_bpf_map_full_total",
	"Events a kernel map had no room for (an insert into a full hash map, or an entry pushed out of a full LRU table): the detail is lost, and so is the count unless the collector keeps a coarser one (drops by reason alone, connects in an overflow slot). Where the collector has a map-size flag, raise it.",
	[]string{"map"}, nil)

// BPFMapFull reports how many events found the kernel map full.
// Collectors whose maps can fill send one per map on every scrape, 0
// included, so `increase(...) > 0` alerts on any of them.
func BPFMapFull(ch chan<- prometheus.Metric, mapName string, events uint64) {
	ch <- prometheus.MustNewConstMetric(bpfMapFullDesc, prometheus.CounterValue, float64(events), mapName)
}
