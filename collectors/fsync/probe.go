package fsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/collectors"
)

// ProbeSpec is the active probe's line in the agent's table.
var ProbeSpec = collectors.Spec{
	Name:           "fsyncprobe",
	Help:           "Active fsync probe: 2,300-byte writes, each followed by fdatasync, as fio --fdatasync=1 --bs=2300 does, on the etcd disk.",
	DefaultEnabled: true,
	Setup:          probeSetup,
}

var (
	probeDesc = prometheus.NewDesc(collectors.Namespace+"_disk_fsync_duration_seconds",
		"fdatasync latency of the active probe's 2,300-byte sequential writes (fio --fdatasync=1 --bs=2300), with etcd's WAL fsync buckets plus 125/250/500 µs and 10 ms.",
		[]string{"path"}, nil)
	probeUpDesc = prometheus.NewDesc(collectors.Namespace+"_disk_fsync_probe_up",
		"1 if the last probe round on the path succeeded, 0 with the reason if not (missing, read_only, disk_full, io_error).",
		[]string{"path", "reason"}, nil)
)

// blockSize is etcd's typical WAL write, the seed article's fio --bs.
const blockSize = 2300

// subdir is the probe's own directory under each path; everything in it
// is the probe's and is removed on exit.
const subdir = ".netsonde-fsync-probe"

type probeConfig struct {
	paths    *[]string
	interval *time.Duration
	writes   *int
	maxBytes *int64
}

func probeSetup(app *kingpin.Application) collectors.Factory {
	c := probeConfig{
		paths: app.Flag("fsyncprobe.path", "Directory to probe, on the disk to judge (repeatable). Default: /var/lib/etcd when it exists.").Strings(),
		interval: app.Flag("fsyncprobe.interval", "A probe round every interval.").
			Default("10s").Duration(),
		writes: app.Flag("fsyncprobe.writes", "2,300-byte write+fdatasync pairs per round.").
			Default("20").Int(),
		maxBytes: app.Flag("fsyncprobe.max-bytes", "Size at which the probe file is started afresh: the most the probe keeps on disk per path.").
			Default("4194304").Int64(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		paths := *c.paths
		if len(paths) == 0 {
			if st, err := os.Stat("/var/lib/etcd"); err == nil && st.IsDir() {
				paths = []string{"/var/lib/etcd"}
			}
		}
		if len(paths) == 0 {
			return nil, collectors.Down("no_path", errors.New("no --fsyncprobe.path and no /var/lib/etcd on this node: nothing to probe"))
		}
		if *c.writes < 1 || *c.interval < time.Second || *c.maxBytes < blockSize {
			return nil, collectors.Down("bad_flag", fmt.Errorf("--fsyncprobe.writes must be ≥ 1, --fsyncprobe.interval ≥ 1s, --fsyncprobe.max-bytes ≥ %d", blockSize))
		}
		p := &prober{deps: deps, cfg: c, state: map[string]*pathState{}, done: make(chan struct{})}
		for _, path := range paths {
			p.state[path] = &pathState{}
		}
		ctx, p.cancel = context.WithCancel(ctx)
		go p.loop(ctx)
		return p, nil
	}
}

type pathState struct {
	hist   histogram
	reason string // "" while working
	file   *os.File
	offset int64
	seq    int
}

type prober struct {
	deps   collectors.Deps
	cfg    probeConfig
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	state map[string]*pathState
}

// loop runs a round on every path each interval. Load per path: writes ×
// 2,300 bytes and as many fdatasyncs per interval (default 20 per 10 s,
// 46 KB), at most max-bytes on disk, and the disk busy only for the time
// those syncs take.
func (p *prober) loop(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(*p.cfg.interval)
	defer t.Stop()
	for {
		for path := range p.state {
			p.round(path)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *prober) round(path string) {
	p.mu.Lock()
	st := p.state[path]
	p.mu.Unlock()
	buf := make([]byte, blockSize)
	var durations []time.Duration
	err := func() error {
		for i := 0; i < *p.cfg.writes; i++ {
			if st.file == nil || st.offset+blockSize > *p.cfg.maxBytes {
				if err := p.newFile(path, st); err != nil {
					return err
				}
			}
			if _, err := st.file.Write(buf); err != nil {
				return err
			}
			st.offset += blockSize
			begin := time.Now()
			if err := syscall.Fdatasync(int(st.file.Fd())); err != nil {
				return err
			}
			durations = append(durations, time.Since(begin))
		}
		return nil
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range durations {
		st.hist.observe(d)
	}
	old := st.reason
	st.reason = reasonOf(err)
	if err != nil && st.reason != old {
		p.deps.Logger.Warn("fsync probe failing", "path", path, "reason", st.reason, "err", err)
	}
	if err != nil && st.file != nil {
		st.file.Close()
		st.file = nil
	}
}

// newFile starts a new probe file, as fio lays out a new file: appending
// writes, so each fdatasync also commits the size change, like a WAL.
func (p *prober) newFile(path string, st *pathState) error {
	dir := filepath.Join(path, subdir)
	if st.file != nil {
		st.file.Close()
		os.Remove(st.file.Name())
		st.file = nil
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st.seq++
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("probe-%d", st.seq)), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	st.file, st.offset = f, 0
	return nil
}

func reasonOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, os.ErrNotExist):
		return "missing"
	case errors.Is(err, syscall.EROFS):
		return "read_only"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "disk_full"
	case errors.Is(err, os.ErrPermission):
		return "not_permitted"
	default:
		return "io_error"
	}
}

func (p *prober) Collect(_ context.Context, ch chan<- prometheus.Metric) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	paths := make([]string, 0, len(p.state))
	for path := range p.state {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	var down []string
	for _, path := range paths {
		st := p.state[path]
		n, sum, buckets := st.hist.cumulative()
		ch <- prometheus.MustNewConstHistogram(probeDesc, n, sum, buckets, path)
		up := 1.0
		if st.reason != "" {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(probeUpDesc, prometheus.GaugeValue, up, path, st.reason)
		if st.reason != "" {
			down = append(down, path+": "+st.reason)
		}
	}
	if len(down) > 0 {
		// The collector is down with the first path's reason; each path's
		// own state is in netsonde_disk_fsync_probe_up.
		return collectors.Down(p.state[strings.SplitN(down[0], ": ", 2)[0]].reason, fmt.Errorf("probe failing on %s", strings.Join(down, ", ")))
	}
	return nil
}

// Close stops the probe and removes its files and directories.
func (p *prober) Close() error {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for path, st := range p.state {
		if st.file != nil {
			st.file.Close()
			st.file = nil
		}
		if err := os.RemoveAll(filepath.Join(path, subdir)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
