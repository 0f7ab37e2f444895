package doctor

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadFixture(t *testing.T, name string, elapsed float64) Observation {
	t.Helper()
	read := func(file string) Snapshot {
		f, err := os.Open(filepath.Join("testdata", name, file))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s, err := Parse(f)
		if err != nil {
			t.Fatalf("%s/%s: %v", name, file, err)
		}
		return s
	}
	return Observation{Before: read("before.prom"), After: read("after.prom"), Elapsed: elapsed}
}

func rules(t *testing.T) Rules {
	t.Helper()
	r, err := LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type want struct {
	id       string
	severity Severity
	subject  string
	says     []string // substrings of the summary and evidence
}

// One fixture per finding and one per near miss just under the threshold
// the alert rule sets (deploy/prometheus/rules.yml, read, not copied): if a
// threshold changes there, the near misses here say so.
func TestChecksFromFixtures(t *testing.T) {
	r := rules(t)
	for _, tc := range []struct {
		fixture string
		elapsed float64
		want    []want
	}{
		// fill 0.76 > 0.75
		{"conntrack-filling", 10, []want{{"conntrack-fill", Warning, "nf_conntrack", []string{"76% full", "7600 of 10000"}}}},
		// fill 0.75 is not > 0.75
		{"conntrack-filling-near", 10, nil},
		// 0.96 > 0.95
		{"conntrack-full", 10, []want{{"conntrack-fill", Critical, "nf_conntrack", []string{"96% full"}}}},
		// 0.95 is not > 0.95, but is > 0.75
		{"conntrack-full-near", 10, []want{{"conntrack-fill", Warning, "nf_conntrack", []string{"95% full"}}}},
		// 1 drop in 10 s = 30 per 5m > 10
		{"conntrack-drop", 10, []want{{"conntrack-drop", Critical, "drop", []string{"conntrack dropped 1 packet in 10.0s", "= 30 per 5m"}}}},
		// 1 drop in 30 s = 10 per 5m, not > 10
		{"conntrack-drop-near", 30, nil},
		{"conntrack-insert-failed", 10, []want{{"conntrack-insert-failed", Warning, "insert_failed", []string{"failed 1 insert in"}}}},
		{"conntrack-insert-failed-near", 10, nil},
		// 2 in 10 s = 120 per 10m > 60; 1 = 60, not > 60
		{"conntrack-early-drop", 10, []want{{"conntrack-early-drop", Warning, "early_drop", []string{"evicted 2 entries"}}}},
		{"conntrack-early-drop-near", 10, nil},
		{"mtu-mismatch", 10, []want{{"mtu-mismatch", Warning, "vx0", []string{"vx0 (vxlan)", "MTU 1500", "expected 1450"}}}},
		{"mtu-mismatch-near", 10, nil},
		{"pmtu-blackhole", 10, []want{{"pmtu-blackhole", Critical, "198.18.62.2", []string{"black hole towards 198.18.62.2"}}}},
		{"pmtu-blackhole-near", 10, nil},
		// IPv6: the black hole says packet-too-big and tracepath -6; the
		// path MTU of 1280 under eth0's 1500 is a finding of its own
		{"pmtu-blackhole-ipv6", 10, []want{
			{"pmtu-blackhole", Critical, "fd00:5e::2:2", []string{"IPv6 path-MTU black hole towards fd00:5e::2:2", "no ICMPv6 packet-too-big", `netsonde_path_mtu_bytes{target="fd00:5e::2:2"} = 1280`}},
			{"path-mtu-below-interface", Warning, "fd00:5e::2:2", []string{"is 1280, below the 1500 bytes eth0 sends"}},
		}},
		// a VXLAN over IPv6 at 1500 where 1430 fits, and an interface
		// below IPv6's minimum
		{"mtu-mismatch-ipv6-minimum", 10, []want{
			{"mtu-mismatch", Warning, "low0", []string{"low0 (bridge): MTU 1200 is below IPv6's minimum of 1280"}},
			{"mtu-mismatch", Warning, "vx6", []string{"vx6 (vxlan)", "MTU 1500", "expected 1430"}},
		}},
		{"path-mtu-below", 10, []want{{"path-mtu-below-interface", Warning, "198.18.62.2", []string{"is 1400, below the 1500 bytes eth0 sends"}}}},
		{"path-mtu-below-near", 10, nil},
		// 4000 in 8 s = 500/s > 50/s
		{"packet-drops", 8, []want{{"packet-drops", Warning, "NETFILTER_DROP", []string{"4000 packets dropped with reason NETFILTER_DROP", "3900 on interface db1", "100 on interface eth0, pod shop/cart-7d9f"}}}},
		// 400 in 8 s = 50/s, not > 50/s: shown, as info
		{"packet-drops-near", 8, []want{{"packet-drops", Info, "NETFILTER_DROP", []string{"400 packets dropped", "50.0/s"}}}},
		{"packet-drops-info", 8, []want{
			{"packet-drops", Info, "NETFILTER_DROP", []string{"200 packets dropped with reason NETFILTER_DROP in 8.0s", "200 on interface db1"}},
			{"packet-drops", Info, "NO_SOCKET", []string{"3 packets dropped with reason NO_SOCKET", "3 on interface lo"}},
		}},
		// 101 in 10 s = 10.1/s > 10/s; 100 is not
		{"tcp-retransmits", 10, []want{{"tcp-retransmits", Warning, "ESTABLISHED", []string{"101 segments", "91 from pod shop/cart-7d9f", "10 from the host"}}}},
		{"tcp-retransmits-near", 10, nil},
		// 11 SYNs in 10 s = 1.1/s > 1/s; 10 is not
		{"tcp-connect-retries", 10, []want{{"tcp-connect-retries", Warning, "SYN_SENT", []string{"resent 11 SYNs", "11 from pod shop/cart-7d9f"}}}},
		{"tcp-connect-retries-near", 10, nil},
		// Of the run's 100 fsyncs 2 took over 10 ms: p99 13 ms. The 1,000
		// fast ones before the run must not hide them.
		{"disk-fsync-slow", 10, []want{{"disk-fsync-slow", Warning, "/var/lib/etcd", []string{"p99 13ms", "100 fsyncs"}}}},
		// 1 of 100 over 10 ms: p99 is exactly 10 ms, not above
		{"disk-fsync-slow-near", 10, nil},
		// 11 of 100 connects failed in 10 s: 0.11 > 0.1 (10 of 100 is not)
		{"tcp-connect-failures", 10, []want{{"tcp-connect-failures", Warning, "namespace shop", []string{"11 of 100 TCP connects from namespace shop failed", "8 refused from pod shop/cart-7d9f", "3 timeout from pod shop/cart-7d9f"}}}},
		{"tcp-connect-failures-near", 10, nil},
		// the overlay loses probes, the underlay does not (both losing is a peer down)
		{"mesh-path-failing", 10, []want{{"mesh-path-failing", Warning, "overlay", []string{"4 probes to peer nodes were lost over the overlay"}}}},
		{"mesh-path-failing-near", 10, nil},
		// 6 of 100 queries unanswered in 10 s: 0.06 > 0.05 (5 of 100 is not);
		// the 2 SERVFAIL answers are a note
		{"dns-timeouts", 10, []want{
			{"dns-timeouts", Warning, "pod shop/web-1", []string{"6 of 100 DNS queries from pod shop/web-1 got no answer"}},
			{"dns-servfail", Info, "pod shop/web-1", []string{"2 DNS answers to pod shop/web-1 were SERVFAIL"}},
		}},
		{"dns-timeouts-near", 10, nil},
		// 41 overflows in 10 s > 0/s; the host's ListenDrops are not overflows
		{"listen-overflows", 10, []want{{"listen-overflows", Warning, "pod shop/api", []string{"the accept queue of pod shop/api overflowed 41 times in 10.0s"}}}},
		{"listen-overflows-near", 10, nil},
		// 21 in 10 s = 2.1/s > 1/s; 10 is not (RcvbufErrors not added)
		{"udp-receive-errors", 10, []want{{"udp-receive-errors", Warning, "pod shop/metrics", []string{"failed to receive 21 datagrams", "20 of them for a full receive buffer"}}}},
		{"udp-receive-errors-near", 10, nil},
		// 1010 of 1000 pages > 1; 1000 is not
		{"tcp-memory-pressure", 10, []want{{"tcp-memory-pressure", Warning, "tcp", []string{"TCP sockets hold 1010 pages, 101% of tcp_mem's pressure level (1000)"}}}},
		{"tcp-memory-pressure-near", 10, nil},
		// 10 in 10 s: 300 per 5m > 0; none during the run is not
		{"ephemeral-ports-exhausted", 10, []want{{"ephemeral-ports-exhausted", Critical, "pod shop/client", []string{"10 TCP connects of pod shop/client failed", "+10 (300 per 5m > 0)"}}}},
		{"ephemeral-ports-exhausted-near", 10, nil},
		// ipv4 at 950 of 1000: 0.95 > 0.9
		{"neighbour-full", 10, []want{{"neighbour-table-full", Critical, "ipv4", []string{"ipv4 neighbour table is 95% full (950 of 1000 entries)"}}}},
		// exactly 0.9, and refusals from before the run: nothing
		{"neighbour-full-near", 10, nil},
		// room, but 3 refusals during the run: any refusal
		{"neighbour-refused", 10, []want{{"neighbour-table-full", Critical, "ipv4", []string{"refused 3 new entries in 10.0s", "table_full_total{family=\"ipv4\"} +3"}}}},
		// 11 qdisc drops in 10 s = 1.1/s > 1/s; 10 is 1/s, shown as info
		{"qdisc-drops", 10, []want{{"qdisc-drops", Warning, "eth0", []string{"the mq qdisc of eth0 dropped 11 packets in 10.0s"}}}},
		{"qdisc-drops-near", 10, []want{{"qdisc-drops", Info, "eth0", []string{"dropped 10 packets", "1.0/s"}}}},
		{"collector-down", 10, []want{{"collector-down", Warning, "drops", []string{"collector drops is down on this node (no_btf)"}}}},
		{"collector-down-near", 10, nil},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			rep, err := Analyse(loadFixture(t, tc.fixture, tc.elapsed), r, "fixture")
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Findings) != len(tc.want) {
				t.Fatalf("%d findings, want %d: %+v", len(rep.Findings), len(tc.want), rep.Findings)
			}
			for i, w := range tc.want {
				f := rep.Findings[i]
				if f.ID != w.id || f.Severity != w.severity || f.Subject != w.subject {
					t.Errorf("finding %d: %s/%s/%s, want %s/%s/%s", i, f.ID, f.Severity, f.Subject, w.id, w.severity, w.subject)
				}
				text := f.Summary + "\n" + strings.Join(f.Evidence, "\n")
				for _, s := range w.says {
					if !strings.Contains(text, s) {
						t.Errorf("finding %d does not say %q:\n%s", i, s, text)
					}
				}
				if f.Alert == "" || f.RunbookURL != r[f.Alert].RunbookURL || f.Why == "" || f.Next == "" {
					t.Errorf("finding %d lacks its alert, runbook, why or next: %+v", i, f)
				}
			}
			wantHealthy := true
			for _, w := range tc.want {
				if w.severity >= Warning {
					wantHealthy = false
				}
			}
			if rep.Healthy != wantHealthy {
				t.Errorf("healthy = %v, want %v", rep.Healthy, wantHealthy)
			}
		})
	}
}

// A fixture for every check: a check added without one fails here.
func TestEveryCheckHasAFixture(t *testing.T) {
	ids := map[string]bool{}
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		ids[e.Name()] = true
	}
	for _, id := range []string{"conntrack-filling", "conntrack-full", "conntrack-drop", "conntrack-insert-failed",
		"conntrack-early-drop", "mtu-mismatch", "pmtu-blackhole", "path-mtu-below", "packet-drops",
		"tcp-retransmits", "tcp-connect-retries", "disk-fsync-slow", "collector-down",
		"tcp-connect-failures", "mesh-path-failing", "dns-timeouts", "listen-overflows", "udp-receive-errors",
		"tcp-memory-pressure", "ephemeral-ports-exhausted"} {
		if !ids[id] || !ids[id+"-near"] {
			t.Errorf("check %s needs fixtures testdata/%s and testdata/%s-near", id, id, id)
		}
	}
}

func TestQuantileMatchesPrometheus(t *testing.T) {
	b := []bucket{{0.1, 50}, {0.2, 100}, {0.4, 100}}
	if got := quantile(0.5, append(b, bucket{upper: inf, count: 100}), 100); got != 0.1 {
		t.Errorf("p50 = %v, want 0.1", got)
	}
	if got := quantile(0.75, append(b, bucket{upper: inf, count: 100}), 100); math.Abs(got-0.15) > 1e-9 {
		t.Errorf("p75 = %v, want 0.15", got)
	}
	// Rank in +Inf: the last finite bound, as histogram_quantile.
	if got := quantile(0.99, []bucket{{0.1, 50}, {inf, 100}}, 100); got != 0.1 {
		t.Errorf("p99 in +Inf = %v, want 0.1", got)
	}
}

var inf = math.Inf(1)

// Rules without an alert doctor judges with, or with its threshold gone,
// stop doctor with a reason: a check that silently never fires is worse.
func TestAnalyseRefusesIncompleteRules(t *testing.T) {
	o := loadFixture(t, "mtu-mismatch", 10)
	r := rules(t)
	delete(r, "NetsondePathMTUBelowInterfaceMTU")
	if _, err := Analyse(o, r, "x"); err == nil || !strings.Contains(err.Error(), "NetsondePathMTUBelowInterfaceMTU is not in the rules") {
		t.Errorf("missing alert: %v", err)
	}
	r = rules(t)
	a := r["NetsondeConntrackTableFull"]
	a.HasThreshold = false
	r["NetsondeConntrackTableFull"] = a
	if _, err := Analyse(o, r, "x"); err == nil || !strings.Contains(err.Error(), "NetsondeConntrackTableFull has no threshold") {
		t.Errorf("alert without threshold: %v", err)
	}
}

// The next step for an IPv6 black hole is IPv6's: tracepath -6, and the
// firewall rule that drops packet-too-big; for an IPv4 one, IPv4's.
func TestPMTUBlackHoleNextStepByFamily(t *testing.T) {
	r := rules(t)
	for fixture, want := range map[string][]string{
		"pmtu-blackhole-ipv6": {"tracepath -6 -n fd00:5e::2:2", "ICMPv6 packet-too-big (type 2)", "ip6tables -S"},
		"pmtu-blackhole":      {"tracepath -n 198.18.62.2", "ICMP type 3 code 4"},
	} {
		rep, err := Analyse(loadFixture(t, fixture, 10), r, "fixture")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) == 0 || rep.Findings[0].ID != "pmtu-blackhole" {
			t.Fatalf("%s: no pmtu-blackhole first: %+v", fixture, rep.Findings)
		}
		for _, w := range want {
			if !strings.Contains(rep.Findings[0].Next, w) {
				t.Errorf("%s: next step %q does not say %q", fixture, rep.Findings[0].Next, w)
			}
		}
	}
}

// A drop finding's next step is the capture that shows those packets, at
// the place that dropped most, then the reason's own command.
func TestDropNextIsCapture(t *testing.T) {
	r, err := LoadRules()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Analyse(loadFixture(t, "packet-drops", 8), r, "fixture")
	if err != nil {
		t.Fatal(err)
	}
	want := "netsonde capture --reason NETFILTER_DROP --interface db1 --count 20; then nft list ruleset"
	if len(rep.Findings) != 1 || !strings.HasPrefix(rep.Findings[0].Next, want) {
		t.Fatalf("next %q, want it to start with %q", rep.Findings[0].Next, want)
	}
}
