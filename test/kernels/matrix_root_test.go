package kernels_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite docs/kernels.md from this run of the kernel matrix")

// kernelSeries are the kernels the matrix boots: Debian's cloud kernels,
// the newest of each series apt knows. $NETSONDE_KERNELS overrides them
// (space-separated series or package names; "none" skips the matrix), and
// The guests have no tracefs mounted, as most nodes' containers;
// NETSONDE_KERNELS_TRACEFS=1 mounts it.
func kernelSeries() []string {
	if s := os.Getenv("NETSONDE_KERNELS"); s != "" {
		if s == "none" {
			return nil
		}
		return strings.Fields(s)
	}
	return []string{"6.1", "6.12"}
}

// kernelRun is what one kernel's VM reported.
type kernelRun struct {
	series, kver string
	wall         time.Duration
	result       string            // PASS, FAIL or NONE (no result came back)
	checks       []string          // test names in order
	status       map[string]string // test name -> PASS/FAIL/SKIP
	hooks        []hookLine
	output       string
}

type hookLine map[string]string // run, collector/program/gauge, up/attached/value, reason, hook

var (
	resultRE = regexp.MustCompile(`NETSONDE-GUEST-RESULT: (\w+)(?: rc=\d+ kernel=(\S+))?`)
	checkRE  = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
)

func parseRun(series, out string, wall time.Duration) *kernelRun {
	r := &kernelRun{series: series, wall: wall, result: "NONE", status: map[string]string{}, output: out}
	s := bufio.NewScanner(strings.NewReader(out))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if m := resultRE.FindStringSubmatch(line); m != nil {
			r.result, r.kver = m[1], m[2]
		}
		if m := checkRE.FindStringSubmatch(line); m != nil {
			if _, ok := r.status[m[2]]; !ok {
				r.checks = append(r.checks, m[2])
			}
			r.status[m[2]] = m[1]
		}
		if strings.HasPrefix(line, hookMarker+" ") {
			h := hookLine{}
			for _, f := range strings.Fields(line)[1:] {
				k, v, _ := strings.Cut(f, "=")
				h[k] = v
			}
			r.hooks = append(r.hooks, h)
		}
	}
	sort.SliceStable(r.checks, func(i, j int) bool { return r.checks[i] < r.checks[j] })
	return r
}

// TestKernelMatrix boots each kernel of the matrix under qemu
// (hack/kernels/run.sh) with the agent and this package's guest tests,
// in parallel, and fails with the guest's output when a check fails there.
// With -update it rewrites docs/kernels.md: which hook each collector used
// on each kernel, and each check's result.
func TestKernelMatrix(t *testing.T) {
	if os.Getenv("NETSONDE_GUEST") == "1" {
		t.Skip("inside the matrix's VM")
	}
	kernels := kernelSeries()
	if len(kernels) == 0 {
		if testenv.InCI() {
			t.Fatal("NETSONDE_KERNELS=none under CI=true: the kernel matrix must run in CI")
		}
		t.Skip("NETSONDE_KERNELS=none")
	}
	testenv.RequireRoot(t) // apt-get download, and install-deps
	root := moduleRoot(t)
	testenv.Run(t, filepath.Join(root, "hack", "install-deps.sh"))

	bin := t.TempDir()
	agent, guestBin := filepath.Join(bin, "netsonde"), filepath.Join(bin, "kernels.test")
	build := func(args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	build("build", "-trimpath", "-ldflags=-s -w", "-o", agent, "./cmd/netsonde")
	build("test", "-c", "-o", guestBin, "./test/kernels")

	var mu sync.Mutex
	runs := map[string]*kernelRun{}
	t.Run("kernels", func(t *testing.T) {
		for _, k := range kernels {
			t.Run(k, func(t *testing.T) {
				t.Parallel()
				out := filepath.Join(t.TempDir(), "vm")
				args := []string{"-o", out, "-a", agent, "-t", guestBin}
				if os.Getenv("NETSONDE_KERNELS_TRACEFS") == "1" {
					args = append(args, "-m") // tracefs mounted; by default not, as on most nodes
				}
				cmd := exec.Command(filepath.Join(root, "hack", "kernels", "run.sh"), append(args, k)...)
				var buf bytes.Buffer
				cmd.Stdout, cmd.Stderr = &buf, &buf
				start := time.Now()
				err := cmd.Run()
				r := parseRun(k, buf.String(), time.Since(start))
				mu.Lock()
				runs[k] = r
				mu.Unlock()
				var summary []string
				for _, c := range r.checks {
					summary = append(summary, r.status[c]+" "+c)
				}
				t.Logf("%s (%s): %s in %v\n%s", k, r.kver, r.result, r.wall.Round(time.Second), strings.Join(summary, "\n"))
				if err != nil || r.result != "PASS" {
					t.Errorf("kernel %s: guest %s (run.sh: %v); its output:\n%s", k, r.result, err, buf.String())
				}
			})
		}
	})

	doc := hookTable(kernels, runs)
	if *update {
		path := filepath.Join(root, "docs", "kernels.md")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		// The README carries the same table between its markers.
		readme := filepath.Join(root, "README.md")
		b, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		const begin, end = "<!-- kernels:begin -->\n", "<!-- kernels:end -->"
		i, j := bytes.Index(b, []byte(begin)), bytes.Index(b, []byte(end))
		if i < 0 || j < i {
			t.Fatalf("README.md has no %q ... %q markers", begin, end)
		}
		table := doc
		if k := strings.Index(table, "-->\n\n"); strings.HasPrefix(table, "<!--") && k >= 0 {
			table = table[k+len("-->\n\n"):]
		}
		out := append(append(append([]byte{}, b[:i+len(begin)]...), table...), b[j:]...)
		if err := os.WriteFile(readme, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s and README.md", path)
	} else {
		t.Logf("hook table (go test ./test/kernels -run TestKernelMatrix -update writes it to docs/kernels.md):\n%s", doc)
	}
}

// collectorOf names the collector a program belongs to.
func collectorOf(program string) string {
	switch {
	case strings.HasPrefix(program, "kfree_skb"):
		return "drops"
	case strings.HasPrefix(program, "frag_"), program == "fragments", program == "icmp_send":
		return "fragments"
	case strings.HasPrefix(program, "tcp_retransmit"):
		return "tcpretrans"
	case program == "inet_sock_set_state", program == "inet_sk_error_report", strings.HasSuffix(program, "_reset"):
		return "tcpconnect"
	case strings.HasPrefix(program, "dns_"):
		return "dns"
	case strings.HasPrefix(program, "ext4_"), strings.HasPrefix(program, "sys_"):
		return "fsynctrace"
	}
	return "?"
}

// hookTable renders the matrix as Markdown: per collector (and per forced
// attach mode), per kernel, whether it was up and which programs were
// attached (with the hook label when the agent exports one); then each
// check's result per kernel.
func hookTable(kernels []string, runs map[string]*kernelRun) string {
	type rowKey struct{ run, collector string }
	var rows []rowKey
	type acc struct {
		up, reason          string
		attached, detached  []string
		ifaces, failures    string
		haveIfaces, haveAny bool
	}
	state := map[rowKey]map[string]*acc{}
	get := func(rk rowKey, k string) *acc {
		if state[rk] == nil {
			state[rk] = map[string]*acc{}
			rows = append(rows, rk)
		}
		if state[rk][k] == nil {
			state[rk][k] = &acc{}
		}
		return state[rk][k]
	}
	for _, k := range kernels {
		r := runs[k]
		if r == nil {
			continue
		}
		for _, h := range r.hooks {
			run := h["run"]
			// The default run has every collector; the other runs each
			// exist for one collector's forced mode (or its own check).
			label := func(c string) rowKey {
				if run == "default" || !strings.Contains(run, ".attach=") || strings.HasSuffix(run, "=auto") {
					return rowKey{"", c}
				}
				return rowKey{run, c}
			}
			switch {
			case h["collector"] != "":
				rk := label(h["collector"])
				if run != "default" && rk.run == "" {
					continue // the default run says it already
				}
				a := get(rk, k)
				a.haveAny = true
				a.up, a.reason = h["up"], h["reason"]
			case h["program"] != "":
				rk := label(collectorOf(h["program"]))
				if run != "default" && rk.run == "" {
					continue
				}
				a := get(rk, k)
				p := h["program"]
				if h["hook"] != "" {
					p += " (" + h["hook"] + ")"
				}
				if h["attached"] == "1" {
					a.attached = append(a.attached, "`"+p+"`")
				} else {
					a.detached = append(a.detached, "`"+p+"`")
				}
			case h["gauge"] != "":
				rk := label("fragments")
				if run != "default" && rk.run == "" {
					continue
				}
				a := get(rk, k)
				a.haveIfaces = true
				if strings.HasSuffix(h["gauge"], "_interfaces") {
					a.ifaces = h["value"]
				} else {
					a.failures = h["value"]
				}
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].collector != rows[j].collector {
			return rows[i].collector < rows[j].collector
		}
		return rows[i].run < rows[j].run
	})

	var b strings.Builder
	b.WriteString("<!-- Generated by `make kernels` (go test ./test/kernels -run TestKernelMatrix -update, as root): do not edit. -->\n\n")
	b.WriteString("| collector |")
	for _, k := range kernels {
		kv := k
		if r := runs[k]; r != nil && r.kver != "" {
			kv = r.kver
		}
		fmt.Fprintf(&b, " %s |", kv)
	}
	b.WriteString("\n|---|")
	for range kernels {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, rk := range rows {
		name := "`" + rk.collector + "`"
		if rk.run != "" {
			name += " with `--" + rk.run + "`"
		}
		fmt.Fprintf(&b, "| %s |", name)
		for _, k := range kernels {
			a := state[rk][k]
			if a == nil {
				b.WriteString(" — |")
				continue
			}
			var parts []string
			switch {
			case !a.haveAny:
			case a.up == "1":
				parts = append(parts, "up")
			default:
				parts = append(parts, fmt.Sprintf("**down** (`%s`)", a.reason))
			}
			if len(a.attached) > 0 {
				parts = append(parts, "attached: "+strings.Join(a.attached, ", "))
			}
			if len(a.detached) > 0 && a.up != "1" {
				parts = append(parts, "not attached: "+strings.Join(a.detached, ", "))
			}
			if a.haveIfaces {
				parts = append(parts, fmt.Sprintf("on %s interfaces, %s failures", a.ifaces, a.failures))
			}
			if len(a.attached) == 0 && len(a.detached) == 0 && !a.haveIfaces && a.up == "1" {
				parts = append(parts, "no eBPF")
			}
			fmt.Fprintf(&b, " %s |", strings.Join(parts, "; "))
		}
		b.WriteString("\n")
	}

	b.WriteString("\n| check |")
	for _, k := range kernels {
		fmt.Fprintf(&b, " %s |", k)
	}
	b.WriteString("\n|---|")
	for range kernels {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var checks []string
	seen := map[string]bool{}
	for _, k := range kernels {
		if r := runs[k]; r != nil {
			for _, c := range r.checks {
				if !seen[c] {
					seen[c] = true
					checks = append(checks, c)
				}
			}
		}
	}
	rank := func(c string) int {
		for i, o := range checkOrder {
			if o == c {
				return i
			}
		}
		return len(checkOrder)
	}
	sort.Slice(checks, func(i, j int) bool {
		if ri, rj := rank(checks[i]), rank(checks[j]); ri != rj {
			return ri < rj
		}
		return checks[i] < checks[j]
	})
	for _, c := range checks {
		d, ok := checkDesc[c]
		if !ok {
			d = "`" + c + "`"
		}
		if d == "" {
			continue
		}
		fmt.Fprintf(&b, "| %s |", d)
		for _, k := range kernels {
			st := "—"
			if r := runs[k]; r != nil && r.status[c] != "" {
				st = r.status[c]
				if st == "FAIL" {
					st = "**FAIL**"
				}
			}
			fmt.Fprintf(&b, " %s |", st)
		}
		b.WriteString("\n")
	}
	b.WriteString("| wall time of `hack/kernels/run.sh` (initramfs, boot, checks; tcg, 2 vCPUs; kernels in parallel) |")
	for _, k := range kernels {
		if r := runs[k]; r != nil {
			fmt.Fprintf(&b, " %v |", r.wall.Round(time.Second))
		} else {
			b.WriteString(" — |")
		}
	}
	b.WriteString("\n")
	return b.String()
}

// checkDesc says what each guest test checks, for the table ("" leaves a
// row out: the matrix itself, and parents summed up by their subtests).
var checkDesc = map[string]string{
	"TestKernelMatrix":                       "",
	"TestNoSocketDrops":                      "",
	"TestAgentAllCollectorsUp":               "every collector up, its programs attached, fragments on both interfaces with 0 failures",
	"TestNoSocketDrops/auto":                 "10 `NO_SOCKET` drops counted exactly (hook chosen by auto)",
	"TestNoSocketDrops/tracepoint":           "10 `NO_SOCKET` drops counted exactly with `--drops.attach=tracepoint`",
	"TestNoSocketDrops/auto_interface":       "… and labelled with the receiving interface (a veth peer in another namespace)",
	"TestNoSocketDrops/tracepoint_interface": "… and labelled with the receiving interface, with `--drops.attach=tracepoint`",
	"TestCaptureDrops":                       "",
	"TestCaptureDrops/auto":                  "`netsonde capture` through the agent: 10 `NO_SOCKET` drops as 10 records with their headers (addresses, ports, length)",
	"TestCaptureDrops/tracepoint":            "… the same with `--drops.attach=tracepoint`",
	"TestEgressFragmentsTC":                  "300 egress fragments on a veth counted exactly with `--fragments.attach=tc`",
	"TestForcedTCX":                          "`--fragments.attach=tcx`: up and attached by tcx where the kernel has TCX (6.6+), else down with `attach_failed` and the program at 0",
	"TestSynRetransmits":                     "SYN retransmits of a black-holed connect = the kernel's `TCPSynRetrans` delta",
	"TestExt4Fdatasyncs":                     "traced ext4 fdatasyncs ≥ the 50 made",
	"TestTCPConnectOutcomes":                 "connects: 5 established, 3 refused, 2 ICMP-unreachable errors, 1 kernel timeout, exactly",
	"TestSocketCounters":                     "a full accept queue's `TcpExtListenOverflows` and a full UDP buffer's `UdpRcvbufErrors` equal to the kernel's; 10 connects with no local port left: `no_port` +10",
	"TestDNSCountsCgroupHook":                "… the same with `--dns.hook=cgroup` (the socket's namespace read by the cgroup programs)",
	"TestBelowIPCounters":                    "a `tbf` qdisc's drops equal to `tc -s qdisc`'s, a veth's tx drops to a down peer equal to `tx_dropped` (where the kernel counts them), carrier changes after five flaps equal to `carrier_changes`",
	"TestDNSCounts":                          "13 DNS queries, 10 NOERROR answers with their durations and 3 timeouts counted exactly, per client namespace",
	"TestPathMTUIPv6":                        "IPv6 path MTU over a 1,280 hop: 1,280 in 2 probes as `tracepath -6` says; with packet-too-big dropped, 1,280 in 9 probes and the black hole flagged; a VXLAN over IPv6 at 1,500 a mismatch with expected 1,430",
	"TestWireGuardOverIPv6":                  "WireGuard over a 1,500 underlay, endpoints read over generic netlink: an IPv6 peer's device at 1,440 a mismatch with expected 1,420, at 1,420 none; an IPv4 peer's at 1,440 fits",
	"TestNeighbourTableFull":                 "the ARP table 16 entries from gc_thresh3, 64 unanswered neighbours: the refused (the sender's `UdpSndbufErrors`) equal to `ip -s ntable`'s table_fulls, the rest its res_failed; netsonde's entries, table_full and resolution failures equal to `ip -s ntable`'s",
}

// checkOrder is the table's order of checks (others follow by name).
var checkOrder = []string{
	"TestAgentAllCollectorsUp",
	"TestNoSocketDrops/auto",
	"TestNoSocketDrops/auto_interface",
	"TestNoSocketDrops/tracepoint",
	"TestNoSocketDrops/tracepoint_interface",
	"TestCaptureDrops/auto",
	"TestCaptureDrops/tracepoint",
	"TestEgressFragmentsTC",
	"TestForcedTCX",
	"TestSynRetransmits",
	"TestTCPConnectOutcomes",
	"TestSocketCounters",
	"TestExt4Fdatasyncs",
	"TestDNSCounts",
	"TestDNSCountsCgroupHook",
	"TestBelowIPCounters",
	"TestPathMTUIPv6",
	"TestWireGuardOverIPv6",
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
