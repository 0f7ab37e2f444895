// Package fsyncprobe measures fsync latency on the etcd disk with an
// active probe that writes and fdatasyncs the way
// `fio --rw=write --ioengine=sync --fdatasync=1 --bs=2300` does, in the
// same histogram as the fsync tracer (collectors/fsynctrace), so the two
// read side by side, and beside etcd's etcd_disk_wal_fsync_duration_seconds.
package fsyncprobe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/fsynctrace"
)

// Spec is the active probe's line in the agent's table.
var Spec = collectors.Spec{
	Name:           "fsyncprobe",
	Help:           "Active fsync probe: 2,300-byte writes, each followed by fdatasync, as fio --fdatasync=1 --bs=2300 does, on the etcd disk.",
	DefaultEnabled: true,
	Metrics:        []string{"netsonde_disk_fsync"},
	// A histogram and an up gauge per probed path.
	Budget: func(_, _ int) int { return 64 },
	Setup:  probeSetup,
}

var (
	probeDesc = prometheus.NewDesc(collectors.Namespace+"_disk_fsync_duration_seconds",
		"fdatasync latency of the active probe's 2,300-byte sequential writes (fio --fdatasync=1 --bs=2300), with etcd's WAL fsync buckets plus 125/250/500 µs and 10 ms.",
		[]string{"path"}, nil)
	probeUpDesc = prometheus.NewDesc(collectors.Namespace+"_disk_fsync_probe_up",
		"1 if the last probe round on the path succeeded, 0 with the reason if not (missing, read_only, disk_full, not_permitted, other_filesystem, io_error).",
		[]string{"path", "reason"}, nil)
)

// blockSize is etcd's typical WAL write, the seed article's fio --bs.
const blockSize = 2300

// subdir is the probe's own directory under an explicit --fsyncprobe.path,
// and the hidden one inside etcd's data directory when that is a mount of
// its own; everything in it is the probe's.
const subdir = ".netsonde-fsync-probe"

// siblingName is the probe's directory beside etcd's data directory
// (/var/lib/netsonde-fsync-probe for /var/lib/etcd): on the same
// filesystem when etcd's directory is not a mount point, so the probe
// measures the disk etcd writes to without writing in etcd's directory,
// where kubeadm's preflight (DirAvailable) and `etcdutl snapshot restore`
// expect nothing but etcd's own files.
const siblingName = "netsonde-fsync-probe"

type probeConfig struct {
	paths    *[]string
	etcdDir  *string
	hostRoot *string
	interval *time.Duration
	writes   *int
	maxBytes *int64
}

// target is one directory the probe writes in.
type target struct {
	// label is the directory as the node names it (the path label).
	label string
	// dir is where the agent writes: label under --fsyncprobe.host-root.
	dir string
	// sameDevAs, when set, is a directory (under the host root) whose
	// filesystem the probe must be on: dir is checked by st_dev against it
	// each time dir is made.
	sameDevAs string
	// transient: dir is inside etcd's own mount, so it exists only during
	// a round and is removed after every one, leaving nothing between
	// rounds.
	transient bool
}

// errOtherFilesystem: the sibling directory is not on etcd's filesystem
// (something is mounted there), so probing it would measure another disk.
var errOtherFilesystem = errors.New("not on the filesystem of etcd's data directory")

// placeProbe decides where the probe writes when no --fsyncprobe.path is
// given, from etcd's data directory as the node has it (hostRoot is the
// node's root as the agent sees it: "/" on the host, /host/proc/1/root in
// the DaemonSet). It never creates or writes etcdDir.
func placeProbe(hostRoot, etcdDir string) (target, error) {
	etcdDir = filepath.Clean(etcdDir)
	onHost := func(p string) string { return filepath.Join(hostRoot, p) }
	st, err := os.Stat(onHost(etcdDir))
	if err != nil || !st.IsDir() {
		if err == nil {
			err = fmt.Errorf("%s is not a directory", etcdDir)
		}
		// A worker: no etcd here, nothing to judge. Not an error.
		return target{}, collectors.Down("no_path", fmt.Errorf("no etcd data directory %s on this node (%w): nothing to probe; --fsyncprobe.path names another directory", etcdDir, err))
	}
	parent := filepath.Dir(etcdDir)
	pst, err := os.Stat(onHost(parent))
	if err != nil {
		return target{}, collectors.Down(reasonOf(err), fmt.Errorf("stat %s: %w", parent, err))
	}
	if devOf(st) != devOf(pst) {
		// etcd's directory is the root of its own filesystem (a dedicated
		// disk): the only way onto that filesystem is inside it, so a
		// hidden directory, for one round at a time.
		hidden := filepath.Join(etcdDir, subdir)
		return target{label: hidden, dir: onHost(hidden), transient: true}, nil
	}
	sibling := filepath.Join(parent, siblingName)
	return target{label: sibling, dir: onHost(sibling), sameDevAs: onHost(etcdDir)}, nil
}

func devOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}

func probeSetup(app *kingpin.Application) collectors.Factory {
	c := probeConfig{
		paths: app.Flag("fsyncprobe.path", "Directory to probe, on the disk to judge (repeatable); the probe writes in a .netsonde-fsync-probe directory inside it. Default: the filesystem of --fsyncprobe.etcd-dir, from outside that directory.").Strings(),
		etcdDir: app.Flag("fsyncprobe.etcd-dir", "etcd's data directory: without --fsyncprobe.path the probe measures its filesystem from a sibling directory (netsonde-fsync-probe beside it) or, when it is a mount point, from a hidden directory inside it removed after every round. Never created; absent means no probe.").
			Default("/var/lib/etcd").String(),
		hostRoot: app.Flag("fsyncprobe.host-root", "The node's root filesystem as the agent sees it (in the DaemonSet: /host/proc/1/root); --fsyncprobe.path and --fsyncprobe.etcd-dir are paths on the node.").
			Default("/").String(),
		interval: app.Flag("fsyncprobe.interval", "A probe round every interval.").
			Default("10s").Duration(),
		writes: app.Flag("fsyncprobe.writes", "2,300-byte write+fdatasync pairs per round.").
			Default("20").Int(),
		maxBytes: app.Flag("fsyncprobe.max-bytes", "Size at which the probe file is started afresh: the most the probe keeps on disk per path.").
			Default("4194304").Int64(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		if *c.writes < 1 || *c.interval < time.Second || *c.maxBytes < blockSize {
			return nil, collectors.Down("bad_flag", fmt.Errorf("--fsyncprobe.writes must be ≥ 1, --fsyncprobe.interval ≥ 1s, --fsyncprobe.max-bytes ≥ %d", blockSize))
		}
		var targets []target
		for _, path := range *c.paths {
			label := filepath.Join(path, subdir)
			targets = append(targets, target{label: path, dir: filepath.Join(*c.hostRoot, label)})
		}
		if len(targets) == 0 {
			t, err := placeProbe(*c.hostRoot, *c.etcdDir)
			if err != nil {
				return nil, err
			}
			// A hidden directory left inside etcd's directory by an agent
			// killed during a round, or by a netsonde that probed there:
			// its files go (all but a live agent's), and the directory once
			// empty, before etcd's tools find it.
			stale := filepath.Join(*c.hostRoot, *c.etcdDir, subdir)
			if _, err := os.Lstat(stale); err == nil {
				removeStale(stale, deps.Logger)
				if err := os.Remove(stale); err == nil {
					deps.Logger.Info("removed a stale fsync probe directory from etcd's data directory", "dir", filepath.Join(*c.etcdDir, subdir))
				}
			}
			targets = []target{t}
		}
		p := &prober{deps: deps, cfg: c, state: map[string]*pathState{}, done: make(chan struct{})}
		for _, t := range targets {
			removeStale(t.dir, deps.Logger)
			p.state[t.label] = &pathState{target: t}
		}
		ctx, p.cancel = context.WithCancel(ctx)
		go p.loop(ctx)
		return p, nil
	}
}

type pathState struct {
	target
	hist   fsynctrace.Histogram
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
				if err := p.newFile(st, buf); err != nil {
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
	if st.transient {
		// Inside etcd's own mount: nothing of the probe's stays between
		// rounds.
		if cerr := st.removeDir(); cerr != nil && err == nil {
			err = cerr
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range durations {
		st.hist.Observe(d)
	}
	old := st.reason
	st.reason = reasonOf(err)
	if err != nil && st.reason != old {
		p.deps.Logger.Warn("fsync probe failing", "path", path, "reason", st.reason, "err", err)
	}
	if err != nil && st.file != nil {
		// The file goes with the error (a full disk keeps nothing of
		// ours); the next round starts a new one.
		name := st.file.Name()
		st.file.Close()
		os.Remove(name)
		st.file = nil
	}
}

// newFile starts a new probe file, as fio lays out a new file: appending
// writes, so each fdatasync also commits the size change, like a WAL. The
// first write and fdatasync of a file are not timed: they also commit the
// new directory entry and inode, which a WAL segment pays once per 64 MB,
// not once per round.
func (p *prober) newFile(st *pathState, buf []byte) error {
	if st.file != nil {
		st.file.Close()
		os.Remove(st.file.Name())
		st.file = nil
	}
	if err := os.Mkdir(st.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("make probe directory %s: %w", st.label, err)
	}
	fi, err := os.Lstat(st.dir)
	if err != nil {
		return fmt.Errorf("stat probe directory %s: %w", st.label, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("probe directory %s: %w", st.label, syscall.ENOTDIR)
	}
	if fi.Mode().Perm() != 0o700 {
		// Made by someone else (a kubelet's hostPath, an older netsonde):
		// the probe's files are nobody else's business.
		if err := os.Chmod(st.dir, 0o700); err != nil {
			return fmt.Errorf("chmod probe directory %s: %w", st.label, err)
		}
	}
	if st.sameDevAs != "" {
		ref, err := os.Stat(st.sameDevAs)
		if err != nil {
			return fmt.Errorf("stat %s: %w", st.sameDevAs, err)
		}
		if devOf(fi) != devOf(ref) {
			return fmt.Errorf("probe directory %s: %w", st.label, errOtherFilesystem)
		}
	}
	st.seq++
	// The pid in the name: two agents on one node (two releases) share the
	// sibling directory, and must not truncate each other's file.
	f, err := os.OpenFile(filepath.Join(st.dir, fmt.Sprintf("probe-%d-%d", os.Getpid(), st.seq)), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create probe file in %s: %w", st.label, err)
	}
	st.file, st.offset = f, 0
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("write probe file in %s: %w", st.label, err)
	}
	st.offset += blockSize
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("fdatasync probe file in %s: %w", st.label, err)
	}
	return nil
}

// removeDir closes the probe's file, removes it, and removes the
// directory unless another agent's files are in it (two releases on one
// node share the sibling directory; the last one out removes it).
func (st *pathState) removeDir() error {
	if st.file != nil {
		name := st.file.Name()
		st.file.Close()
		st.file = nil
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove probe file in %s: %w", st.label, err)
		}
	}
	if err := os.Remove(st.dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("remove probe directory %s: %w", st.label, err)
	}
	return nil
}

// probeFile matches the probe's file names: probe-PID-SEQ, and probe-SEQ
// of netsonde versions before the pid was in the name.
var probeFile = regexp.MustCompile(`^probe-(?:([0-9]+)-)?[0-9]+$`)

// removeStale removes probe files in dir left by agents that are gone
// (killed during a round, or an older version): a file whose pid no longer
// runs. Files of a live agent sharing the directory are left alone. It
// needs the host's pids (hostPID in the DaemonSet), which the pod-attribution
// collectors need as well.
func removeStale(dir string, logger *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // nothing there yet, or unreadable: a round will say why
	}
	for _, e := range entries {
		m := probeFile.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if m[1] != "" {
			pid, err := strconv.Atoi(m[1])
			if err == nil && pid > 0 && syscall.Kill(pid, 0) != syscall.ESRCH {
				continue // a live process, maybe another agent
			}
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			logger.Info("removed a stale fsync probe file", "file", filepath.Join(dir, e.Name()))
		}
	}
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
	case errors.Is(err, errOtherFilesystem):
		return "other_filesystem"
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
		n, sum, buckets := st.hist.Cumulative()
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
	for _, st := range p.state {
		if err := st.removeDir(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
