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
	"golang.org/x/sys/unix"

	bpffsync "github.com/netsonde/netsonde/bpf/fsynctrace"
	"github.com/netsonde/netsonde/collectors"
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
		"1 if the last probe round on the path succeeded, 0 with the reason if not (missing, read_only, disk_full, not_permitted, other_filesystem, not_a_directory, io_error).",
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

// target is one directory the probe writes in: name in the node's
// directory parent, the agent's own (it makes it, and follows no symlink
// to it).
type target struct {
	// root is the node's root as the agent sees it (--fsyncprobe.host-root).
	root string
	// label is the directory as the node names it (the path label).
	label string
	// parent is a node path, resolved in root each time the probe's
	// directory is made; name is the probe's directory in it.
	parent, name string
	// sameDevAs, when set, is a node directory whose filesystem the probe
	// must be on: the probe's directory is checked by st_dev against it
	// each time it is made.
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
// the DaemonSet). A symlinked etcd directory (/var/lib/etcd ->
// /mnt/etcd-disk) is followed as the node follows it, and the probe goes
// beside or inside where it leads, named by that path. It never creates or
// writes etcdDir.
func placeProbe(hostRoot, etcdDir string) (target, error) {
	resolved, err := resolveInRoot(hostRoot, etcdDir)
	var dir *os.File
	if err == nil {
		dir, err = openInRoot(hostRoot, resolved)
	}
	if err != nil {
		// A worker: no etcd here, nothing to judge. Not an error.
		return target{}, collectors.Down("no_path", fmt.Errorf("no etcd data directory %s on this node (%w): nothing to probe; --fsyncprobe.path names another directory", etcdDir, err))
	}
	st, err := fstat(dir)
	dir.Close()
	if err != nil {
		return target{}, collectors.Down(reasonOf(err), fmt.Errorf("stat %s: %w", resolved, err))
	}
	parent := filepath.Dir(resolved)
	pdir, err := openInRoot(hostRoot, parent)
	if err != nil {
		return target{}, collectors.Down(reasonOf(err), err)
	}
	pst, err := fstat(pdir)
	pdir.Close()
	if err != nil {
		return target{}, collectors.Down(reasonOf(err), fmt.Errorf("stat %s: %w", parent, err))
	}
	if st.Dev != pst.Dev {
		// etcd's directory is the root of its own filesystem (a dedicated
		// disk): the only way onto that filesystem is inside it, so a
		// hidden directory, for one round at a time.
		return target{root: hostRoot, label: filepath.Join(resolved, subdir), parent: resolved, name: subdir, transient: true}, nil
	}
	return target{root: hostRoot, label: filepath.Join(parent, siblingName), parent: parent, name: siblingName, sameDevAs: resolved}, nil
}

func probeSetup(app *kingpin.Application) collectors.Factory {
	c := probeConfig{
		paths: app.Flag("fsyncprobe.path", "Directory to probe, on the disk to judge (repeatable); the probe writes in a .netsonde-fsync-probe directory inside it. Default: the filesystem of --fsyncprobe.etcd-dir, from outside that directory.").Strings(),
		etcdDir: app.Flag("fsyncprobe.etcd-dir", "etcd's data directory: without --fsyncprobe.path the probe measures its filesystem from a sibling directory (netsonde-fsync-probe beside it) or, when it is a mount point, from a hidden directory inside it removed after every round. Never created; absent means no probe.").
			Default("/var/lib/etcd").String(),
		hostRoot: app.Flag("fsyncprobe.host-root", "The node's root filesystem as the agent sees it (in the DaemonSet: /host/proc/1/root); --fsyncprobe.path and --fsyncprobe.etcd-dir are paths on the node, their symlinks resolved within it (an absolute link from the node's root).").
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
			targets = append(targets, target{root: *c.hostRoot, label: path, parent: path, name: subdir})
		}
		if len(targets) == 0 {
			t, err := placeProbe(*c.hostRoot, *c.etcdDir)
			if err != nil {
				return nil, err
			}
			// A hidden directory left inside etcd's directory by an agent
			// killed during a round, or by a netsonde that probed there:
			// its files go (all but a live agent's), and the directory once
			// empty, before etcd's tools find it. A symlink by that name is
			// neither followed nor removed.
			if etcd, err := openNodeDir(*c.hostRoot, *c.etcdDir); err == nil {
				removeStale(etcd, subdir, deps.Logger)
				if err := unix.Unlinkat(int(etcd.Fd()), subdir, unix.AT_REMOVEDIR); err == nil {
					deps.Logger.Info("removed a stale fsync probe directory from etcd's data directory", "dir", filepath.Join(*c.etcdDir, subdir))
				}
				etcd.Close()
			}
			targets = []target{t}
		}
		p := &prober{deps: deps, cfg: c, state: map[string]*pathState{}, done: make(chan struct{})}
		for _, t := range targets {
			if parent, err := openNodeDir(t.root, t.parent); err == nil {
				removeStale(parent, t.name, deps.Logger)
				parent.Close()
			}
			p.state[t.label] = &pathState{target: t}
		}
		ctx, p.cancel = context.WithCancel(ctx)
		go p.loop(ctx)
		return p, nil
	}
}

type pathState struct {
	target
	hist   bpffsync.Histogram
	reason string // "" while working
	// parent and dir are open while file is: the probe's file is removed,
	// and its directory, by these descriptors, never by a path that
	// could have been swapped for a symlink since.
	parentf, dirf *os.File
	file          *os.File
	fileName      string
	offset        int64
	seq           int
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
		if cerr := st.release(true); cerr != nil && err == nil {
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
	if err != nil {
		// The file goes with the error (a full disk keeps nothing of
		// ours); the next round starts a new one. A file that cannot
		// be removed is left on the node: say so.
		if rerr := st.release(false); rerr != nil {
			p.deps.Logger.Warn("fsync probe file left behind", "path", path, "err", rerr)
		}
	}
}

// newFile starts a new probe file, as fio lays out a new file: appending
// writes, so each fdatasync also commits the size change, like a WAL. The
// first write and fdatasync of a file are not timed: they also commit the
// new directory entry and inode, which a WAL segment pays once per 64 MB,
// not once per round. The directory is made afresh (or found again) each
// time, in the node's parent directory resolved again, and neither it nor
// the file is reached through a symlink: a symlink at the probe's name
// (someone pointing it elsewhere) fails the round with not_a_directory.
func (p *prober) newFile(st *pathState, buf []byte) error {
	if err := st.release(false); err != nil {
		// The new file is written anyway; the old one is reported.
		p.deps.Logger.Warn("fsync probe file left behind", "path", st.label, "err", err)
	}
	if err := st.openDir(); err != nil {
		return errors.Join(err, st.release(false))
	}
	st.seq++
	// The pid in the name: two agents on one node (two releases) share the
	// sibling directory, and must not truncate each other's file. O_EXCL:
	// a name already there is not ours to write through (a file left by a
	// predecessor with our pid is removed and made again, once).
	st.fileName = fmt.Sprintf("probe-%d-%d", os.Getpid(), st.seq)
	create := func() (int, error) {
		return unix.Openat(int(st.dirf.Fd()), st.fileName, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	}
	fd, err := create()
	if errors.Is(err, unix.EEXIST) && unix.Unlinkat(int(st.dirf.Fd()), st.fileName, 0) == nil {
		fd, err = create()
	}
	if err != nil {
		return errors.Join(fmt.Errorf("create probe file in %s: %w", st.label, err), st.release(false))
	}
	f := os.NewFile(uintptr(fd), filepath.Join(st.label, st.fileName))
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

// openDir opens the node's parent directory and makes (or finds) the
// probe's directory in it, 0700 and the agent's, on the filesystem it
// must be on.
func (st *pathState) openDir() error {
	parent, err := openNodeDir(st.root, st.parent)
	if err != nil {
		return fmt.Errorf("open %s: %w", st.parent, err)
	}
	st.parentf = parent
	if err := unix.Mkdirat(int(parent.Fd()), st.name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("make probe directory %s: %w", st.label, err)
	}
	dir, err := openOwnDir(parent, st.name)
	if err != nil {
		return fmt.Errorf("probe directory %s: %w", st.label, err)
	}
	st.dirf = dir
	fi, err := fstat(dir)
	if err != nil {
		return fmt.Errorf("stat probe directory %s: %w", st.label, err)
	}
	if int(fi.Uid) != os.Geteuid() {
		// Not made by an agent: someone else's directory, whose entries
		// they could change under the probe.
		return fmt.Errorf("probe directory %s belongs to uid %d: %w", st.label, fi.Uid, os.ErrPermission)
	}
	if fi.Mode&0o777 != 0o700 {
		// Made by someone else (a kubelet's hostPath, an older netsonde):
		// the probe's files are nobody else's business.
		if err := unix.Fchmod(int(dir.Fd()), 0o700); err != nil {
			return fmt.Errorf("chmod probe directory %s: %w", st.label, err)
		}
	}
	if st.sameDevAs != "" {
		ref, err := openNodeDir(st.root, st.sameDevAs)
		if err != nil {
			return fmt.Errorf("open %s: %w", st.sameDevAs, err)
		}
		rst, err := fstat(ref)
		ref.Close()
		if err != nil {
			return fmt.Errorf("stat %s: %w", st.sameDevAs, err)
		}
		if fi.Dev != rst.Dev {
			return fmt.Errorf("probe directory %s: %w", st.label, errOtherFilesystem)
		}
	}
	return nil
}

// release closes the probe's file and removes it, and closes the
// directories; rmdir also removes the probe's directory unless another
// agent's files are in it (two releases on one node share the sibling
// directory; the last one out removes it).
func (st *pathState) release(rmdir bool) error {
	var errs []error
	if st.file != nil {
		st.file.Close()
		st.file = nil
		if err := unix.Unlinkat(int(st.dirf.Fd()), st.fileName, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove probe file in %s: %w", st.label, err))
		}
	}
	if st.dirf != nil {
		st.dirf.Close()
		st.dirf = nil
	}
	if rmdir && st.parentf == nil {
		// Between rounds after a failure: find the directory again, if
		// it is there.
		st.parentf, _ = openNodeDir(st.root, st.parent)
	}
	if st.parentf != nil {
		if rmdir {
			err := unix.Unlinkat(int(st.parentf.Fd()), st.name, unix.AT_REMOVEDIR)
			if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("remove probe directory %s: %w", st.label, err))
			}
		}
		st.parentf.Close()
		st.parentf = nil
	}
	return errors.Join(errs...)
}

// probeFile matches the probe's file names: probe-PID-SEQ, and probe-SEQ
// of netsonde versions before the pid was in the name.
var probeFile = regexp.MustCompile(`^probe-(?:([0-9]+)-)?[0-9]+$`)

// removeStale removes probe files in the directory name of parent left by
// agents that are gone (killed during a round, or an older version): a
// file whose pid no longer runs. Files of a live agent sharing the
// directory are left alone. A symlink at name is not followed. It needs the
// host's pids (hostPID in the DaemonSet), which the pod-attribution
// collectors need as well.
func removeStale(parent *os.File, name string, logger *slog.Logger) {
	dir, err := openOwnDir(parent, name)
	if err != nil {
		return // nothing there yet, or not a directory: a round will say why
	}
	defer dir.Close()
	entries, err := dir.ReadDir(-1)
	if err != nil {
		return
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
		if err := unix.Unlinkat(int(dir.Fd()), e.Name(), 0); err == nil {
			logger.Info("removed a stale fsync probe file", "file", e.Name())
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
	case errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.ENOTDIR):
		// A symlink (or a file) where a directory was expected: in the
		// path after it was resolved, or at the probe's own name.
		return "not_a_directory"
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
		if err := st.release(true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
