package fsync_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// bounds of netsonde's fsync histograms, in seconds, for comparing
// quantiles by bucket.
var bounds = []float64{0.000125, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.01, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192}

func bucketOf(v float64) int { return sort.SearchFloat64s(bounds, v) }

// quantileBucket returns the index of the bucket holding quantile q of a
// scraped histogram series.
func quantileBucket(t *testing.T, s testenv.Series, q float64) int {
	h := s.Metric.GetHistogram()
	rank := q * float64(h.GetSampleCount())
	for _, b := range h.GetBucket() {
		if float64(b.GetCumulativeCount()) >= rank {
			return bucketOf(b.GetUpperBound())
		}
	}
	return len(bounds)
}

// diskDir is a fresh directory on the root (ext4) filesystem: /tmp may be
// a tmpfs, where fdatasync costs nothing and ext4's tracepoints never fire.
func diskDir(t *testing.T) string {
	d, err := os.MkdirTemp("/var/tmp", "netsonde-fsync-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type fioResult struct {
	Jobs []struct {
		Sync struct {
			LatNS struct {
				// N counts the syncs (total_ios stays 0 for syncs).
				N          int                `json:"N"`
				Percentile map[string]float64 `json:"percentile"`
			} `json:"lat_ns"`
		} `json:"sync"`
	} `json:"jobs"`
}

// The probe next to the yardstick, at the same time on one directory: fio
// with the seed's parameters (scaled to 24 MiB, a few seconds) runs while the agent probes
// the same directory and traces fio's own fdatasyncs; the probe's samples
// taken during fio's run are compared with fio's.
//
// Tolerance: the probe's p50 must fall in fio's p50 bucket or the next one
// either side, and its p99 within three buckets. The histogram resolves no
// finer than its bounds (a factor of 2 apart, 1.25 around 10 ms); the two
// write different files, interleaved, so each sees the other's syncs queue
// ahead of its own now and then; and this disk is shared with every other
// test of the run (a real etcd among them), so a p99 of a few hundred
// samples is decided by the handful that meet someone else's burst.
//
// The trace has no such slack: it must count exactly fio's fdatasyncs.
func TestProbeAgreesWithFio(t *testing.T) {
	testenv.RequireCommand(t, "fio")
	dir := diskDir(t)
	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe", "--collector.fsynctrace",
		"--fsyncprobe.path="+dir, "--fsyncprobe.interval=1s", "--fsyncprobe.writes=200", "--fsynctrace.comm=fio")
	probeSeries := func() testenv.Series {
		s := a.Scrape(t).Series("netsonde_disk_fsync_duration_seconds", map[string]string{"path": dir})
		if len(s) != 1 {
			t.Fatalf("want one probe series, got %d", len(s))
		}
		return s[0]
	}
	testenv.Eventually(t, 10*time.Second, "first probe round done", func() bool { return probeSeries().Value > 0 })
	before := probeSeries()

	out, err := exec.Command("fio", "--name=seed", "--rw=write", "--ioengine=sync", "--fdatasync=1",
		"--directory="+dir, "--size=24m", "--bs=2300", "--output-format=json").Output()
	if err != nil {
		t.Fatalf("fio: %v", err)
	}
	during := deltaHistogram(before, probeSeries())
	var fio fioResult
	if err := json.Unmarshal(out, &fio); err != nil || len(fio.Jobs) != 1 {
		t.Fatalf("fio json: %v\n%s", err, out)
	}
	syncs := fio.Jobs[0].Sync
	fioP50, fioP99 := syncs.LatNS.Percentile["50.000000"]/1e9, syncs.LatNS.Percentile["99.000000"]/1e9
	if during.total < 100 {
		t.Fatalf("only %d probe samples during fio's run", during.total)
	}
	p50, p99 := during.quantileBucket(0.5), during.quantileBucket(0.99)
	t.Logf("fio: %d syncs, p50 %.0f µs (bucket %d), p99 %.0f µs (bucket %d); probe during fio: %d samples, p50 bucket %d, p99 bucket %d",
		syncs.LatNS.N, fioP50*1e6, bucketOf(fioP50), fioP99*1e6, bucketOf(fioP99), during.total, p50, p99)
	if d := p50 - bucketOf(fioP50); d < -1 || d > 1 {
		t.Errorf("probe p50 bucket %d vs fio's %d: more than one bucket apart", p50, bucketOf(fioP50))
	}
	if d := p99 - bucketOf(fioP99); d < -3 || d > 3 {
		t.Errorf("probe p99 bucket %d vs fio's %d: more than three buckets apart", p99, bucketOf(fioP99))
	}

	traced, ok := a.Scrape(t).Value("netsonde_process_fsync_duration_seconds", map[string]string{"comm": "fio", "device": rootDevice(t)})
	if !ok || int(traced) != syncs.LatNS.N {
		t.Errorf("traced %v fdatasyncs of fio, fio reports %d", traced, syncs.LatNS.N)
	}
}

// delta is a histogram of the samples between two scrapes of one series.
type delta struct {
	cumulative []uint64 // by bound index, then +Inf
	total      uint64
}

func deltaHistogram(before, after testenv.Series) delta {
	b, a := before.Metric.GetHistogram().GetBucket(), after.Metric.GetHistogram().GetBucket()
	d := delta{total: after.Metric.GetHistogram().GetSampleCount() - before.Metric.GetHistogram().GetSampleCount()}
	for i := range a {
		d.cumulative = append(d.cumulative, a[i].GetCumulativeCount()-b[i].GetCumulativeCount())
	}
	return d
}

func (d delta) quantileBucket(q float64) int {
	rank := q * float64(d.total)
	for i, c := range d.cumulative {
		if float64(c) >= rank {
			return i
		}
	}
	return len(bounds)
}

func rootDevice(t *testing.T) string {
	var st syscallStat
	if err := statDev("/var/tmp", &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", st.major, st.minor))
	if err != nil {
		return fmt.Sprintf("%d:%d", st.major, st.minor)
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("DEVNAME=")); ok {
			return string(v)
		}
	}
	return ""
}

// A missing directory, a read-only filesystem and a full disk each take the
// probe down with its reason; the agent keeps serving, and nothing of the
// probe's is left behind.
func TestProbeDiskFaults(t *testing.T) {
	// It mounts a read-only and a full tmpfs.
	testenv.RequireRoot(t)
	base := t.TempDir()
	ro, full := filepath.Join(base, "ro"), filepath.Join(base, "full")
	for _, d := range []string{ro, full} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Run(t, "mount", "-t", "tmpfs", "-o", "ro,size=1m", "nsdro", ro)
	t.Cleanup(func() { exec.Command("umount", ro).Run() })
	testenv.Run(t, "mount", "-t", "tmpfs", "-o", "size=64k", "nsdfull", full)
	t.Cleanup(func() { exec.Command("umount", full).Run() })

	for _, tc := range []struct{ path, reason string }{
		{filepath.Join(base, "missing"), "missing"},
		{ro, "read_only"},
		{full, "disk_full"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			ns := testenv.NewNetns(t)
			a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsyncprobe", "--collector.mtu",
				"--fsyncprobe.path="+tc.path, "--fsyncprobe.interval=1s", "--fsyncprobe.writes=50", "--fsyncprobe.max-bytes=1048576")
			testenv.Eventually(t, 5*time.Second, "probe down with "+tc.reason, func() bool {
				m := a.Scrape(t)
				up, ok := m.Value("netsonde_collector_up", map[string]string{"collector": "fsyncprobe", "reason": tc.reason})
				pu, ok2 := m.Value("netsonde_disk_fsync_probe_up", map[string]string{"path": tc.path, "reason": tc.reason})
				mtu, _ := m.Value("netsonde_collector_up", map[string]string{"collector": "mtu"})
				return ok && up == 0 && ok2 && pu == 0 && mtu == 1
			})
			testenv.StopAgent(t, a)
			if _, err := os.Stat(filepath.Join(tc.path, ".netsonde-fsync-probe")); !os.IsNotExist(err) {
				t.Errorf("probe directory left behind in %s (%v)", tc.path, err)
			}
		})
	}
}

// A real etcd under write load: every fdatasync netsonde traces for it is
// one etcd counts itself, in its WAL fsync or backend commit histograms.
func TestTraceCountsEtcdFsyncs(t *testing.T) {
	testenv.RequireCommand(t, "etcd")
	dir := diskDir(t)
	// A copy under its own name, so this test's etcd is told apart from
	// any other etcd on the machine by comm alone.
	etcdBin := filepath.Join(dir, "etcd-nsdtest")
	testenv.Run(t, "cp", "/usr/bin/etcd", etcdBin)
	client, peer := freePort(t), freePort(t)
	curl := fmt.Sprintf("http://127.0.0.1:%d", client)
	purl := fmt.Sprintf("http://127.0.0.1:%d", peer)

	ns := testenv.NewNetns(t)
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsynctrace", "--fsynctrace.comm=etcd-nsdtest")

	etcd := exec.Command(etcdBin, "--name=nsd", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+curl, "--advertise-client-urls="+curl,
		"--listen-peer-urls="+purl, "--initial-advertise-peer-urls="+purl,
		"--initial-cluster=nsd="+purl, "--log-level=error")
	var elog bytes.Buffer
	etcd.Stdout, etcd.Stderr = &elog, &elog
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Process.Kill(); etcd.Wait() })
	testenv.Eventually(t, 15*time.Second, "etcd healthy", func() bool {
		resp, err := http.Get(curl + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	var walHist, backendHist testenv.Series
	etcdCounts := func() (wal, backend float64) {
		resp, err := http.Get(curl + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m, err := testenv.ParseMetrics(string(b))
		if err != nil {
			t.Fatal(err)
		}
		wal, _ = m.Value("etcd_disk_wal_fsync_duration_seconds", nil)
		walHist = m.Series("etcd_disk_wal_fsync_duration_seconds", nil)[0]
		backend, _ = m.Value("etcd_disk_backend_commit_duration_seconds", nil)
		backendHist = m.Series("etcd_disk_backend_commit_duration_seconds", nil)[0]
		return wal, backend
	}
	traced := func() float64 {
		return a.Scrape(t).Sum("netsonde_process_fsync_duration_seconds", map[string]string{"comm": "etcd-nsdtest"})
	}
	// Let start-up syncs settle, then measure deltas over a write load.
	time.Sleep(500 * time.Millisecond)
	wal0, be0 := etcdCounts()
	tr0 := traced()
	for i := 0; i < 200; i++ {
		body := fmt.Sprintf(`{"key":%q,"value":%q}`, base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("k%d", i))), base64.StdEncoding.EncodeToString([]byte("v")))
		resp, err := http.Post(curl+"/v3/kv/put", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// The backend commits every 100 ms: wait for the last one.
	time.Sleep(300 * time.Millisecond)
	wal1, be1 := etcdCounts()
	tr1 := traced()
	walD, beD, trD := wal1-wal0, be1-be0, tr1-tr0
	t.Logf("etcd: WAL fsyncs +%v, backend commits +%v; netsonde traced +%v", walD, beD, trD)
	if walD < 200 {
		t.Fatalf("etcd counted %v WAL fsyncs for 200 puts", walD)
	}
	// Each put is one WAL fdatasync. Each backend commit is two
	// fdatasyncs of the bolt database: bbolt's Tx.Commit syncs the data
	// pages, then again after writing the meta page. Nothing else fsyncs
	// in a steady state (no WAL segment cut or snapshot at this size).
	// p99s side by side. etcd's buckets start at 1 ms and double, so both
	// are compared on etcd's scale. netsonde times every etcd fdatasync:
	// the WAL's and the 2 per backend commit. The backend ones are the
	// slower (bbolt syncs whole pages) and, 2% of the syncs here, can be
	// all of netsonde's top 1%: so netsonde's p99 must lie from etcd's WAL
	// p99 (or its neighbour below) up to etcd's backend-commit p99 (or its
	// neighbour above), a commit being at least as long as its syncs.
	// (Both histograms count since start; the load dominates them.)
	ours := a.Scrape(t).Series("netsonde_process_fsync_duration_seconds", map[string]string{"comm": "etcd-nsdtest"})
	if len(ours) != 1 {
		t.Fatalf("want one traced series, got %d", len(ours))
	}
	etcdScale := func(upper float64) int {
		i := 0
		for b := 0.001; b < upper && i < 14; b *= 2 {
			i++
		}
		return i
	}
	ourP99 := etcdScale(bounds[min(quantileBucket(t, ours[0], 0.99), len(bounds)-1)])
	walP99 := etcdScale(upperAt(walHist, 0.99))
	backendP99 := etcdScale(upperAt(backendHist, 0.99))
	t.Logf("p99 on etcd's scale: netsonde bucket %d, etcd WAL bucket %d, etcd backend commit bucket %d", ourP99, walP99, backendP99)
	if ourP99 < walP99-1 || ourP99 > max(walP99, backendP99)+1 {
		t.Errorf("netsonde's p99 bucket %d is outside etcd's WAL %d .. backend commit %d (±1)", ourP99, walP99, backendP99)
	}
	if trD != walD+2*beD {
		t.Errorf("traced %v fsyncs; etcd's own counts say WAL %v + 2 × backend commits %v = %v\n%s", trD, walD, beD, walD+2*beD, elog.String())
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// upperAt returns the upper bound of the bucket holding quantile q.
func upperAt(s testenv.Series, q float64) float64 {
	h := s.Metric.GetHistogram()
	rank := q * float64(h.GetSampleCount())
	for _, b := range h.GetBucket() {
		if float64(b.GetCumulativeCount()) >= rank {
			return b.GetUpperBound()
		}
	}
	return 8.192
}
