package fsynctrace_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// A real etcd under write load: every fdatasync netsonde traces for it is
// one etcd counts itself, in its WAL fsync or backend commit histograms.
func TestTraceCountsEtcdFsyncs(t *testing.T) {
	testenv.RequireCommand(t, "etcd")
	dir := testenv.DiskDir(t)
	// A copy under its own name, so this test's etcd is told apart from
	// any other etcd on the machine by comm alone.
	etcdBin := filepath.Join(dir, "etcd-nsdtest")
	testenv.Run(t, "cp", "/usr/bin/etcd", etcdBin)
	// etcd listens on the test namespace's own loopback: ports taken
	// from the machine's (a free one found, closed, then bound by etcd)
	// could be taken in between by another package's test (fresh-node
	// saw etcd never become healthy, once in 20 runs).
	const curl, purl = "http://127.0.0.1:2379", "http://127.0.0.1:2380"
	ns := testenv.NewNetns(t)
	client := ns.HTTPClient()
	a := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.fsynctrace", "--fsynctrace.comm=etcd-nsdtest")

	etcd := ns.Command(etcdBin, "--name=nsd", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+curl, "--advertise-client-urls="+curl,
		"--listen-peer-urls="+purl, "--initial-advertise-peer-urls="+purl,
		"--initial-cluster=nsd="+purl, "--log-level=error")
	var elog bytes.Buffer
	etcd.Stdout, etcd.Stderr = &elog, &elog
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		etcd.Process.Kill()
		etcd.Wait()
		if t.Failed() {
			t.Logf("etcd's log:\n%s", elog.String())
		}
	})
	testenv.Eventually(t, 15*time.Second, "etcd healthy", func() bool {
		resp, err := client.Get(curl + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	var walHist, backendHist testenv.Series
	etcdCounts := func() (wal, backend float64) {
		resp, err := client.Get(curl + "/metrics")
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
		resp, err := client.Post(curl+"/v3/kv/put", "application/json", bytes.NewBufferString(body))
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
	ourP99 := etcdScale(upperAt(ours[0], 0.99))
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
