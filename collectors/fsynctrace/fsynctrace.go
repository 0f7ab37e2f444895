// Package fsynctrace traces the fsyncs of chosen processes (etcd by
// default) with eBPF, timed and bucketed in the kernel, with histogram
// bounds chosen to be read beside etcd's
// etcd_disk_wal_fsync_duration_seconds.
package fsynctrace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	bpffsync "github.com/netsonde/netsonde/bpf/fsynctrace"
	"github.com/netsonde/netsonde/collectors"
)

// Spec is the fsync tracer's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "fsynctrace",
	Help:           "eBPF trace of the fsyncs of chosen processes (etcd by default), timed and bucketed in the kernel.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_process_fsync"},
	// A histogram per traced process and device.
	Budget: func(_, _ int) int { return 64 },
	Setup:  traceSetup,
}

var traceDesc = prometheus.NewDesc(collectors.Namespace+"_process_fsync_duration_seconds",
	"fsync/fdatasync latency of the traced processes, timed in the kernel; device is the block device's name (from /sys/dev/block), or MAJOR:MINOR, or empty with the syscall hook.",
	[]string{"comm", "device"}, nil)

type traceConfig struct {
	comms *[]string
	hook  *string
}

func traceSetup(app *kingpin.Application) collectors.Factory {
	c := traceConfig{
		comms: app.Flag("fsynctrace.comm", "Process name (comm, at most 15 bytes) whose fsyncs to trace (repeatable).").
			Default("etcd").Strings(),
		hook: app.Flag("fsynctrace.hook", "ext4 (ext4's sync tracepoints: no cost to other syscalls) or syscalls (any filesystem, but every syscall on the node gets slower while attached). auto means ext4 only.").
			Default("auto").Enum("auto", bpffsync.SourceExt4, bpffsync.SourceSyscalls),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		if len(*c.comms) > 16 {
			return nil, collectors.Down("bad_flag", errors.New("at most 16 --fsynctrace.comm"))
		}
		// auto never picks the syscall hook on its own: its cost falls
		// on every process of the node, so it is the operator's call.
		source := bpffsync.SourceExt4
		if *c.hook != "auto" {
			source = *c.hook
		}
		t, err := bpffsync.Load(bpffsync.Options{Source: source, Comms: *c.comms, Bounds: bpffsync.BoundsNS(), BTF: deps.BTF})
		if err != nil {
			return nil, collectors.BPFLoadDown(err, "attach_failed")
		}
		if source == bpffsync.SourceSyscalls {
			deps.Logger.Warn("tracing fsyncs with syscall tracepoints: every syscall on the node takes the slow path while netsonde runs", "comms", *c.comms)
		} else {
			deps.Logger.Info("tracing fsyncs", "source", source, "hooks", t.Hooks(), "comms", *c.comms)
		}
		return &tracer{deps: deps, t: t, devNames: map[uint32]string{}}, nil
	}
}

// reader is what Collect uses of the loaded tracer (*bpffsync.Probe), so
// that a test can serve fixed counts.
type reader interface {
	Hooks() map[string]string
	Read() (map[bpffsync.HistKey]uint64, map[bpffsync.SumKey]uint64, error)
	Full() (map[string]uint64, error)
	Close() error
}

type tracer struct {
	deps collectors.Deps
	t    reader

	mu       sync.Mutex
	devNames map[uint32]string
}

func (tr *tracer) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	collectors.BPFHooks(ch, tr.t.Hooks())
	counts, sums, err := tr.t.Read()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	type series struct{ comm, device string }
	hists := map[series]*bpffsync.Histogram{}
	get := func(comm []int8, dev uint32) *bpffsync.Histogram {
		s := series{comm: cString(comm), device: tr.devName(dev)}
		h := hists[s]
		if h == nil {
			h = &bpffsync.Histogram{}
			hists[s] = h
		}
		return h
	}
	for k, n := range counts {
		get(k.Comm[:], k.Dev).AddBucket(k.Bucket, n)
	}
	for k, ns := range sums {
		get(k.Comm[:], k.Dev).AddSum(time.Duration(ns))
	}
	for s, h := range hists {
		n, sum, buckets := h.Cumulative()
		ch <- prometheus.MustNewConstHistogram(traceDesc, n, sum, buckets, s.comm, s.device)
	}
	full, err := tr.t.Full()
	if err != nil {
		return collectors.Down("map_read", err)
	}
	for m, n := range full {
		collectors.BPFMapFull(ch, m, n)
	}
	return nil
}

func cString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// devName names a kernel dev_t (major << 20 | minor) by its block device,
// cached: a device's name does not change while it exists.
func (tr *tracer) devName(dev uint32) string {
	if dev == 0 {
		return ""
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if n, ok := tr.devNames[dev]; ok {
		return n
	}
	mm := fmt.Sprintf("%d:%d", dev>>20, dev&(1<<20-1))
	name := mm
	if b, err := os.ReadFile(tr.deps.SysPath + "/dev/block/" + mm + "/uevent"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "DEVNAME="); ok {
				name = v
			}
		}
	}
	tr.devNames[dev] = name
	return name
}

func (tr *tracer) Close() error { return tr.t.Close() }
