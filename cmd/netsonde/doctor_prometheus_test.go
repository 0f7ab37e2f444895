package main_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/crypto/bcrypt"

	"github.com/netsonde/netsonde/doctor"
	"github.com/netsonde/netsonde/internal/testenv"
)

// fleetNode is one node's agent as Prometheus scraped it for the last
// hour: the raw series netsonde serves, with the target labels the
// ServiceMonitor attaches (cluster, node, instance, job).
type fleetNode struct {
	cluster, name, instance string
	conntrack               float64 // entries of a 100,000 limit
	vxlanMTU                float64 // flannel.1's MTU over a 1500-byte eth0 (1450 fits)
	dropsPerSec             float64 // NETFILTER_DROP on eth0
	up                      float64 // up at the end (1, or 0: the last 10 minutes)
	goneFor                 time.Duration
	noNodeLabel             bool   // netsonde's series lack the node label (up has it)
	notScraped              bool   // kube_node_info only
	collectorDown           string // the reason fsyncprobe is down, if it is
}

// writeOpenMetrics writes span of the fleet's series, every 30 s, ending
// at end, in the OpenMetrics text promtool backfills from.
func writeOpenMetrics(t testing.TB, path string, end time.Time, span time.Duration, nodes []fleetNode) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	const step = 30
	last := end.Unix()
	first := last - int64(span.Seconds())
	// Series of one family must be contiguous: write family by family.
	type series struct {
		labels string
		value  func(ts int64) (float64, bool)
	}
	families := map[string][]series{}
	var order []string
	add := func(name, labels string, value func(ts int64) (float64, bool)) {
		if _, ok := families[name]; !ok {
			order = append(order, name)
		}
		families[name] = append(families[name], series{labels, value})
	}
	for _, n := range nodes {
		n := n
		target := fmt.Sprintf(`cluster=%q,instance=%q,job="netsonde",node=%q`, n.cluster, n.instance, n.name)
		add("kube_node_info", fmt.Sprintf(`cluster=%q,job="kube-state-metrics",node=%q`, n.cluster, n.name), func(int64) (float64, bool) { return 1, true })
		if n.notScraped {
			continue
		}
		stop := last - int64(n.goneFor.Seconds())
		alive := func(ts int64) bool { return ts <= stop }
		add("up", target, func(ts int64) (float64, bool) {
			if n.up == 0 && ts > last-600 {
				return 0, alive(ts)
			}
			return 1, alive(ts)
		})
		// While up is 0 there is nothing else: the scrape failed.
		scraped := func(ts int64) bool { return alive(ts) && (n.up != 0 || ts <= last-600) }
		own := target
		if n.noNodeLabel {
			own = fmt.Sprintf(`cluster=%q,instance=%q,job="netsonde"`, n.cluster, n.instance)
		}
		gauge := func(v float64) func(int64) (float64, bool) {
			return func(ts int64) (float64, bool) { return v, scraped(ts) }
		}
		counter := func(perSec float64) func(int64) (float64, bool) {
			return func(ts int64) (float64, bool) { return perSec * float64(ts-first), scraped(ts) }
		}
		add("netsonde_build_info", own+`,goversion="go1.26",revision="test",version="test"`, gauge(1))
		add("netsonde_collector_up", own+`,collector="conntrack",reason=""`, gauge(1))
		if n.collectorDown != "" {
			add("netsonde_collector_up", own+`,collector="fsyncprobe",reason="`+n.collectorDown+`"`, gauge(0))
		}
		add("netsonde_conntrack_entries", own, gauge(n.conntrack))
		add("netsonde_conntrack_entries_limit", own, gauge(100000))
		add("netsonde_interface_mtu_bytes", own+`,interface="eth0",kind="device",namespace="",pod=""`, gauge(1500))
		add("netsonde_interface_mtu_bytes", own+`,interface="flannel.1",kind="vxlan",namespace="",pod=""`, gauge(n.vxlanMTU))
		add("netsonde_interface_expected_mtu_bytes", own+`,interface="flannel.1"`, gauge(1450))
		mismatch := 0.0
		if n.vxlanMTU > 1450 {
			mismatch = 1 // what mtucheck reports for it
		}
		add("netsonde_mtu_mismatch", own+`,interface="flannel.1",reason="exceeds_underlay"`, gauge(mismatch))
		// Every node drops a little (NO_SOCKET: closed ports).
		add("netsonde_packet_drops_total", own+`,interface="eth0",namespace="",pod="",protocol="ipv4",reason="NO_SOCKET"`, counter(2))
		if n.dropsPerSec > 0 {
			add("netsonde_packet_drops_total", own+`,interface="eth0",namespace="",pod="",protocol="ipv4",reason="NETFILTER_DROP"`, counter(n.dropsPerSec))
		}
		add("netsonde_tcp_retransmits_total", own+`,family="ipv4",namespace="",pod="",state="ESTABLISHED"`, counter(1))
	}
	for _, name := range order {
		typ := "gauge"
		fam := name
		if strings.HasSuffix(name, "_total") {
			typ, fam = "counter", strings.TrimSuffix(name, "_total")
		}
		fmt.Fprintf(w, "# TYPE %s %s\n", fam, typ)
		for _, s := range families[name] {
			for ts := first; ts <= last; ts += step {
				if v, ok := s.value(ts); ok {
					fmt.Fprintf(w, "%s{%s} %g %d\n", name, s.labels, v, ts)
				}
			}
		}
	}
	fmt.Fprintln(w, "# EOF")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// backfill makes TSDB blocks in data from an OpenMetrics file.
func backfill(t testing.TB, om, data string) string {
	t.Helper()
	if out, err := exec.Command("promtool", "tsdb", "create-blocks-from", "openmetrics", om, data).CombinedOutput(); err != nil {
		t.Fatalf("promtool create-blocks-from openmetrics: %v\n%s", err, out)
	}
	return data
}

// startPrometheus runs Debian's Prometheus on a loopback port over dir's
// TSDB, with no scrape jobs: what it holds is what was backfilled, and
// what the rules files record (evaluated every second) if any are given.
// webConfig, if not empty, is its --web.config.file (TLS and basic auth
// as user prom, password s3cret).
func startPrometheus(t testing.TB, dir, webConfig string, ruleFiles ...string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "prometheus.yml")
	// 15 s as sites run it (a subquery in place of a recording rule steps
	// at this interval); 1 s with rules, so they record at once.
	text := "global:\n  evaluation_interval: 15s\n"
	if len(ruleFiles) > 0 {
		text = fmt.Sprintf("global:\n  evaluation_interval: 1s\nrule_files: [%s]\n", strings.Join(ruleFiles, ", "))
	}
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var log bytes.Buffer
	cmd := exec.Command("prometheus", "--config.file="+cfg, "--storage.tsdb.path="+dir,
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=30d", "--log.level=warn", "--web.config.file="+webConfig)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	base, client := "http://"+addr, http.DefaultClient
	if webConfig != "" {
		base = "https://" + addr
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/-/ready", nil)
		req.SetBasicAuth("prom", "s3cret")
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on %s not ready after 30s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until Prometheus holds a series of metric (a rule has
// been evaluated).
func waitFor(t *testing.T, prom, metric string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape("count("+metric+")"))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `"value"`) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 20s", metric)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runDoctorCmd runs `netsonde doctor args...` and returns its output and
// exit status.
func runDoctorCmd(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testenv.AgentBinary(t), append([]string{"doctor"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("doctor: %v", err)
	}
	return o.String(), e.String(), code
}

func clusterSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	for name, b := range map[string][]byte{"schema.json": doctor.Schema, "cluster_schema.json": doctor.ClusterSchema} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("https://github.com/netsonde/netsonde/doctor/"+name, doc); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Compile("https://github.com/netsonde/netsonde/doctor/cluster_schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decodeValid validates doctor's JSON against a schema and decodes it.
func decodeValid[T any](t *testing.T, schema *jsonschema.Schema, out string) T {
	t.Helper()
	var v T
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if err := schema.Validate(doc); err != nil {
		t.Fatalf("output does not validate against its schema: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// clusterJSON runs doctor --prometheus with --output=json, checks its exit
// status and its JSON against the schema, and decodes the report.
func clusterJSON(t *testing.T, schema *jsonschema.Schema, wantCode int, args ...string) doctor.ClusterReport {
	t.Helper()
	out, stderr, code := runDoctorCmd(t, append(args, "--output=json")...)
	if code != wantCode {
		t.Errorf("exit %d, want %d; stderr %s", code, wantCode, stderr)
	}
	return decodeValid[doctor.ClusterReport](t, schema, out)
}

// wantFindings checks a report's findings, as "node severity id subject
// alert", against want (sorted).
func wantFindings(t *testing.T, rep doctor.ClusterReport, want ...string) {
	t.Helper()
	var got []string
	for _, n := range rep.Nodes {
		for _, f := range n.Findings {
			got = append(got, fmt.Sprintf("%s %s %s %s %s", n.Node, f.Severity, f.ID, f.Subject, f.Alert))
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// fleetNodes is the fleet every case below reads: 300 nodes of which
// three are broken in cluster "a", unreachable and unlabelled nodes in
// "b", each threshold's near misses in "c". One TSDB, backfilled once;
// --selector picks the cluster, as with one Prometheus for several.
func fleetNodes() []fleetNode {
	var nodes []fleetNode
	healthy := func(cluster, name, instance string) fleetNode {
		return fleetNode{cluster: cluster, name: name, instance: instance, conntrack: 1000, vxlanMTU: 1450, up: 1}
	}
	for i := range 300 {
		n := healthy("a", fmt.Sprintf("node-%03d", i), fmt.Sprintf("10.1.%d.%d:10333", i/250, i%250+1))
		switch i {
		case 17:
			n.conntrack = 99000 // 99%
		case 42:
			n.vxlanMTU = 1500 // VXLAN at 1500 over a 1500 underlay
		case 123:
			n.dropsPerSec = 500
		}
		nodes = append(nodes, n)
	}
	for i := range 6 {
		n := healthy("b", fmt.Sprintf("b-%d", i), fmt.Sprintf("10.2.0.%d:10333", i+1))
		switch i {
		case 1:
			n.up = 0
		case 2:
			n.goneFor = 20 * time.Minute
		case 3:
			n.notScraped = true
		case 4:
			n.noNodeLabel, n.conntrack = true, 99000
		}
		nodes = append(nodes, n)
	}
	for i, tweak := range []func(*fleetNode){
		func(n *fleetNode) { n.conntrack = 75000 },         // fill 0.75: NetsondeConntrackTableFilling is > 0.75
		func(n *fleetNode) { n.conntrack = 95000 },         // 0.95: not Full (> 0.95), but Filling
		func(n *fleetNode) { n.dropsPerSec = 48 },          // 48 + 2 NO_SOCKET: per reason, 48 < 50
		func(n *fleetNode) { n.vxlanMTU = 1450 },           // fits: mismatch 0
		func(n *fleetNode) { n.dropsPerSec = 50.5 },        // just above 50/s
		func(n *fleetNode) { n.collectorDown = "no_btf" },  // one node's share of a fleet-wide alert
		func(n *fleetNode) { n.collectorDown = "no_path" }, // no etcd here: the alert's own exclusion
	} {
		n := healthy("c", fmt.Sprintf("c-%d", i), fmt.Sprintf("10.3.0.%d:10333", i+1))
		tweak(&n)
		nodes = append(nodes, n)
	}
	return nodes
}

func TestDoctorPrometheus(t *testing.T) {
	testenv.RequireCommand(t, "prometheus", "promtool")
	start := time.Now()
	dir := t.TempDir()
	om := filepath.Join(dir, "fleet.om")
	// The hour ends now: the blocks are within retention and an instant
	// query now reads the last samples.
	writeOpenMetrics(t, om, time.Now(), time.Hour, fleetNodes())
	data := backfill(t, om, filepath.Join(dir, "data"))
	t.Logf("backfilled in %v", time.Since(start).Round(time.Millisecond))
	// A second Prometheus over a copy of the blocks, with rules.yml
	// loaded: the node aggregates are recorded from its first evaluation.
	recData := filepath.Join(dir, "data-recorded")
	if out, err := exec.Command("cp", "-a", data, recData).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	rules, err := filepath.Abs("../../deploy/prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	promRecorded := startPrometheus(t, recData, "", rules)
	prom := startPrometheus(t, data, "")
	schema := clusterSchema(t)
	// The fleet's three broken nodes, as doctor must name them with or
	// without the recording rules.
	threeBroken := []string{
		"node-017 critical conntrack-fill nf_conntrack NetsondeConntrackTableFull",
		"node-042 warning mtu-mismatch flannel.1 NetsondeMTUMismatch",
		"node-123 warning packet-drops NETFILTER_DROP NetsondePacketDropsHigh",
	}

	t.Run("three broken nodes of 300", func(t *testing.T) {
		rep := clusterJSON(t, schema, 1, "--prometheus", prom, `--selector=cluster="a"`)
		wantFindings(t, rep, threeBroken...)
		if rep.NodesTotal != 300 || rep.NodesWithFindings != 3 || rep.NodesUnreachable != 0 || rep.Partial || rep.Healthy {
			t.Errorf("total %d, with findings %d, unreachable %d, partial %v, healthy %v; want 300, 3, 0, false, false (problems %q)",
				rep.NodesTotal, rep.NodesWithFindings, rep.NodesUnreachable, rep.Partial, rep.Healthy, rep.Problems)
		}
		if len(rep.Nodes) > 0 && rep.Nodes[0].Node != "node-017" {
			t.Errorf("first node %s, want the critical node-017", rep.Nodes[0].Node)
		}
		for _, n := range rep.Nodes {
			if want := "netsonde doctor --from http://" + n.Instance + "/metrics"; n.Doctor != want || !strings.Contains(n.Findings[0].Next, want) {
				t.Errorf("%s: doctor %q, next %q; want %q", n.Node, n.Doctor, n.Findings[0].Next, want)
			}
			t.Logf("%s: %s | %s", n.Node, n.Findings[0].Summary, strings.Join(n.Findings[0].Evidence, " | "))
		}
		evidence := map[string]string{}
		for _, n := range rep.Nodes {
			evidence[n.Node] = strings.Join(n.Findings[0].Evidence, "\n")
		}
		for node, want := range map[string][]string{
			"node-017": {"netsonde_conntrack_entries = 99000", "netsonde_conntrack_entries_limit = 100000", "NetsondeConntrackTableFull: 0.99 > 0.95"},
			"node-042": {`netsonde_interface_mtu_bytes{kind="vxlan"} = 1500`, "netsonde_interface_expected_mtu_bytes = 1450"},
			"node-123": {`NetsondePacketDropsHigh{reason="NETFILTER_DROP"}: 500 > 50`, `rate(netsonde_packet_drops_total{interface="eth0"}[5m]) = 500`},
		} {
			for _, w := range want {
				if !strings.Contains(evidence[node], w) {
					t.Errorf("%s: evidence lacks %q:\n%s", node, w, evidence[node])
				}
			}
		}
		text, _, code := runDoctorCmd(t, "--prometheus", prom, `--selector=cluster="a"`)
		if code != 1 || !strings.HasPrefix(text, "netsonde doctor: 300 nodes, 3 with findings (") {
			t.Errorf("text, exit %d:\n%s", code, text)
		}
		t.Logf("text:\n%s", text)
	})

	t.Run("recorded aggregates read in place of the raw sums", func(t *testing.T) {
		// Every recorded series the queries below expect: the rules are
		// in more than one group, and a loaded machine evaluates one
		// group's first round well after another's (fresh-node once ran
		// doctor with the drops recorded but not yet the conntrack fill).
		for _, name := range []string{"node_reason:netsonde_packet_drops:rate5m", "node_state:netsonde_tcp_retransmits:rate5m", "node:netsonde_conntrack_fill:ratio"} {
			waitFor(t, promRecorded, name)
		}
		args := []string{`--selector=cluster="a"`, "--log.level=debug", "--output=json"}
		out, stderr, code := runDoctorCmd(t, append([]string{"--prometheus", promRecorded}, args...)...)
		rep := decodeValid[doctor.ClusterReport](t, schema, out)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantFindings(t, rep, threeBroken...)
		for _, want := range []string{
			`node_reason:netsonde_packet_drops:rate5m{cluster=\"a\"} > 50`,
			`node_state:netsonde_tcp_retransmits:rate5m{state=\"ESTABLISHED\",cluster=\"a\"} > 10`,
			`max_over_time(node:netsonde_conntrack_fill:ratio{cluster=\"a\"}[1m]) > 0.95`,
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("with the rules loaded, no query %s:\n%s", want, stderr)
			}
		}
		// Without them, the same sums come from the raw series.
		_, stderr, _ = runDoctorCmd(t, append([]string{"--prometheus", prom}, args...)...)
		for _, want := range []string{
			`sum without (protocol, interface, namespace, pod) (rate(netsonde_packet_drops_total{cluster=\"a\"}[5m])) > 50`,
			`max_over_time((netsonde_conntrack_entries{cluster=\"a\"} / netsonde_conntrack_entries_limit{cluster=\"a\"})[1m:]) > 0.95`,
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("from raw series, no query %s:\n%s", want, stderr)
			}
		}
	})

	t.Run("unreachable and unlabelled nodes", func(t *testing.T) {
		rep := clusterJSON(t, schema, 1, "--prometheus", prom, `--selector=cluster="b"`)
		wantFindings(t, rep,
			"b-1 warning node-unreachable b-1 NetsondeDown",
			"b-2 warning node-unreachable b-2 NetsondeDown",
			"b-3 warning node-unreachable b-3 NetsondeDown",
			"instance=10.2.0.5:10333 critical conntrack-fill nf_conntrack NetsondeConntrackTableFull",
		)
		if rep.NodesTotal != 6 || rep.NodesUnreachable != 3 || rep.Healthy {
			t.Errorf("total %d, unreachable %d, healthy %v; want 6, 3, false", rep.NodesTotal, rep.NodesUnreachable, rep.Healthy)
		}
		if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "1 finding without a node label") {
			t.Errorf("problems %q, want one about the node label", rep.Problems)
		}
		for _, n := range rep.Nodes {
			if n.Node == "instance=10.2.0.5:10333" && n.Doctor != "netsonde doctor --from http://10.2.0.5:10333/metrics" {
				t.Errorf("%s: doctor %q", n.Node, n.Doctor)
			}
		}
		text, _, _ := runDoctorCmd(t, "--prometheus", prom, `--selector=cluster="b"`)
		if !strings.HasPrefix(text, "netsonde doctor: 6 nodes, 4 with findings (3 unreachable) (") {
			t.Errorf("text:\n%s", text)
		}
		t.Logf("text:\n%s", text)
	})

	t.Run("near misses", func(t *testing.T) {
		rep := clusterJSON(t, schema, 1, "--prometheus", prom, `--selector=cluster="c"`)
		wantFindings(t, rep,
			"c-1 warning conntrack-fill nf_conntrack NetsondeConntrackTableFilling",
			"c-4 warning packet-drops NETFILTER_DROP NetsondePacketDropsHigh",
			"c-5 warning collector-down fsyncprobe NetsondeCollectorDown",
		)
		for _, n := range rep.Nodes {
			if n.Node == "c-5" && n.Findings[0].Summary != "netsonde's fsyncprobe collector is down on 1 node(s) (no_btf)." {
				t.Errorf("c-5: %q", n.Findings[0].Summary)
			}
		}
	})

	t.Run("a healthy selection", func(t *testing.T) {
		out, _, code := runDoctorCmd(t, "--prometheus", prom, `--selector=cluster="a"`, `--selector=node=~"node-00."`)
		if code != 0 || !strings.HasPrefix(out, "netsonde doctor: 10 nodes, 0 with findings") {
			t.Errorf("exit %d, want 0:\n%s", code, out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		empty := startPrometheus(t, t.TempDir(), "")
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + l.Addr().String()
		l.Close()
		for _, c := range []struct {
			name string
			args []string
			want string
		}{
			{"no netsonde", []string{"--prometheus", empty}, "holds no netsonde series in the last 1h"},
			{"selector matching nothing", []string{"--prometheus", prom, `--selector=cluster="none"`}, `holds no netsonde series matching cluster="none"`},
			{"unreachable", []string{"--prometheus", closed}, "does not answer"},
			{"an error", []string{"--prometheus", prom, `--selector=cluster=~"("`}, "answers an error: bad_data"},
			{"not Prometheus", []string{"--prometheus", prom + "/graph"}, "answers"},
		} {
			t.Run(c.name, func(t *testing.T) {
				out, stderr, code := runDoctorCmd(t, c.args...)
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				if code != 2 || out != "" || len(lines) != 1 || !strings.Contains(stderr, c.want) {
					t.Errorf("exit %d, stdout %q, stderr %q; want 2, nothing, one line with %q", code, out, stderr, c.want)
				}
			})
		}
	})

	t.Run("timeout half-way", func(t *testing.T) {
		// A proxy in front of the real Prometheus that never answers the
		// drops check's query: the endpoint times out half-way through.
		target, _ := url.Parse(prom)
		proxy := httputil.NewSingleHostReverseProxy(target)
		block := make(chan struct{})
		t.Cleanup(func() { close(block) })
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The client POSTs its query as a form: read it, and put it
			// back for the proxy.
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			if strings.Contains(form.Get("query")+r.URL.Query().Get("query"), "rate(netsonde_packet_drops_total") {
				select {
				case <-block:
				case <-r.Context().Done():
				}
				return
			}
			proxy.ServeHTTP(w, r)
		})}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		args := []string{"--prometheus", "http://" + l.Addr().String(), `--selector=cluster="a"`, "--timeout=1s", "--output=json"}
		out, stderr, code := runDoctorCmd(t, args...)
		rep := decodeValid[doctor.ClusterReport](t, schema, out)
		if code != 2 || !rep.Partial || !strings.Contains(stderr, "partial") {
			t.Errorf("exit %d, partial %v, stderr %q; want 2, true, partial", code, rep.Partial, stderr)
		}
		wantFindings(t, rep,
			"node-017 critical conntrack-fill nf_conntrack NetsondeConntrackTableFull",
			"node-042 warning mtu-mismatch flannel.1 NetsondeMTUMismatch",
		)
		if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], "check drops (NetsondePacketDropsHigh) not evaluated") {
			t.Errorf("problems %q", rep.Problems)
		}
		_, _, code = runDoctorCmd(t, append(args, "--partial-ok")...)
		if code != 1 {
			t.Errorf("--partial-ok: exit %d, want 1", code)
		}
	})
	t.Run("TLS and basic auth", func(t *testing.T) {
		// Prometheus behind --web.config.file, doctor with promtool's
		// --http.config.file: the CA to trust and the password.
		testenv.RequireCommand(t, "openssl")
		tdir := t.TempDir()
		testenv.Run(t, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", filepath.Join(tdir, "key.pem"), "-out", filepath.Join(tdir, "cert.pem"), "-days", "1",
			"-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
		hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		web := filepath.Join(tdir, "web.yml")
		writeFile(t, web, fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prom: %s\n",
			filepath.Join(tdir, "cert.pem"), filepath.Join(tdir, "key.pem"), hash))
		authData := filepath.Join(tdir, "data")
		if out, err := exec.Command("cp", "-a", data, authData).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		promTLS := startPrometheus(t, authData, web)
		client := filepath.Join(tdir, "client.yml")
		writeFile(t, client, fmt.Sprintf("basic_auth:\n  username: prom\n  password: s3cret\ntls_config:\n  ca_file: %s\n", filepath.Join(tdir, "cert.pem")))
		noPassword := filepath.Join(tdir, "nopass.yml")
		writeFile(t, noPassword, fmt.Sprintf("tls_config:\n  ca_file: %s\n", filepath.Join(tdir, "cert.pem")))

		rep := clusterJSON(t, schema, 1, "--prometheus", promTLS, "--http.config.file", client, `--selector=cluster="a"`)
		if rep.NodesTotal != 300 || rep.NodesWithFindings != 3 {
			t.Errorf("through TLS and basic auth: %s", rep.Summary())
		}
		for _, c := range []struct {
			name string
			args []string
			want string
		}{
			{"no CA", []string{"--prometheus", promTLS}, "does not answer: tls: failed to verify certificate"},
			{"no password", []string{"--prometheus", promTLS, "--http.config.file", noPassword}, "answers an error: client_error: client error: 401"},
			{"no such file", []string{"--prometheus", promTLS, "--http.config.file", filepath.Join(tdir, "none.yml")}, "--http.config.file: "},
		} {
			_, stderr, code := runDoctorCmd(t, c.args...)
			if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("%s: exit %d, stderr %q; want 2 and one line with %q", c.name, code, stderr, c.want)
			}
		}
	})
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// BenchmarkDoctorPrometheus5000Nodes: one doctor --prometheus run over
// 5,000 nodes of which 200 have no netsonde (100 with up 0, 100 only in
// kube_node_info) and three are broken, from 20 minutes of raw series.
func BenchmarkDoctorPrometheus5000Nodes(b *testing.B) {
	testenv.RequireCommand(b, "prometheus", "promtool")
	var nodes []fleetNode
	for i := range 5000 {
		n := fleetNode{cluster: "big", name: fmt.Sprintf("n%04d", i), instance: fmt.Sprintf("10.%d.%d.%d:10333", 8+i/62500, i/250%250, i%250+1),
			conntrack: 1000, vxlanMTU: 1450, up: 1}
		switch {
		case i == 17:
			n.conntrack = 99000
		case i == 42:
			n.vxlanMTU = 1500
		case i == 123:
			n.dropsPerSec = 500
		case i >= 4800 && i < 4900:
			n.up = 0
		case i >= 4900:
			n.notScraped = true
		}
		nodes = append(nodes, n)
	}
	dir := b.TempDir()
	om := filepath.Join(dir, "fleet.om")
	writeOpenMetrics(b, om, time.Now(), 20*time.Minute, nodes)
	prom := startPrometheus(b, backfill(b, om, filepath.Join(dir, "data")), "")
	testenv.AgentBinary(b) // built before the clock starts
	for b.Loop() {
		out, stderr, code := runDoctorCmd(b, "--prometheus", prom, "--output=json")
		var rep doctor.ClusterReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 {
			b.Fatalf("exit %d, %v: %s", code, err, stderr)
		}
		if rep.NodesTotal != 5000 || rep.NodesUnreachable != 200 || rep.NodesWithFindings != 203 {
			b.Fatalf("%s", rep.Summary())
		}
	}
}
