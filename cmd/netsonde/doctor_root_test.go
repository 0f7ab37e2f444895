package main_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/netsonde/netsonde/doctor"
	"github.com/netsonde/netsonde/internal/testenv"
)

var doctorSample = flag.String("doctor.sample", "", "write the text output of the MTU-and-drops scenario to this file (README's sample)")

// doctorRun is one `netsonde doctor` process.
type doctorRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	mu             sync.Mutex // guards stderr while the process runs
	observing      chan struct{}
	done           chan struct{}
	code           int
}

// startDoctor starts `netsonde doctor args...` inside ns (the host's
// namespace if nil), as user nobody if asNobody. observing is closed once
// doctor has taken its first scrape (it logs so at --log.level=info): what
// happens after is inside the observed window.
func startDoctor(t *testing.T, ns *testenv.Netns, asNobody bool, args ...string) *doctorRun {
	t.Helper()
	bin := testenv.AgentBinary(t)
	if asNobody {
		bin = binaryForNobody(t)
	}
	all := append([]string{bin, "doctor", "--log.level=info"}, args...)
	var cmd *exec.Cmd
	if ns != nil {
		cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns.Name, "--"}, all...)...)
	} else {
		cmd = exec.Command(all[0], all[1:]...)
	}
	if asNobody && os.Geteuid() == 0 {
		// nsenter (root) enters the namespace, then the process drops to
		// nobody; from root to a non-root uid the kernel clears every
		// capability, as for a user who runs doctor without sudo.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if ns != nil {
			cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns.Name, "--setuid=65534", "--setgid=65534", "--"}, all...)...)
		}
	}
	d := &doctorRun{cmd: cmd, observing: make(chan struct{}), done: make(chan struct{})}
	cmd.Stdout = &d.stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start doctor: %v", err)
	}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(pipe)
		var once sync.Once
		for sc.Scan() {
			d.mu.Lock()
			d.stderr.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if strings.Contains(sc.Text(), "first scrape taken") {
				once.Do(func() { close(d.observing) })
			}
		}
		io.Copy(io.Discard, pipe)
		cmd.Wait()
		d.code = cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

func (d *doctorRun) waitObserving(t *testing.T) {
	t.Helper()
	select {
	case <-d.observing:
	case <-d.done:
		t.Fatalf("doctor exited (%d) before observing:\n%s%s", d.code, d.stdout.String(), d.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("doctor did not start observing within 60s:\n%s", d.log())
	}
}

func (d *doctorRun) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

func (d *doctorRun) wait(t *testing.T) (code int, stdout string) {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("doctor did not finish within 90s:\n%s", d.log())
	}
	return d.code, d.stdout.String()
}

// binaryForNobody copies the test binary where user nobody may run it (the
// test binaries' folder is root's only).
func binaryForNobody(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "netsonde-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(testenv.AgentBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "netsonde")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// oneLine checks that stderr holds exactly one line, from doctor, saying
// want: a reason, not a stack trace or a usage dump.
func oneLine(t *testing.T, stderr, want string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasPrefix(l, "time=") { // --log.level=info lines
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "netsonde doctor: ") || !strings.Contains(lines[0], want) {
		t.Errorf("stderr should be one line saying %q, got:\n%s", want, stderr)
	}
}

// scenario is a node namespace with a veth to a peer namespace and a VXLAN
// towards the peer, on 198.18.N.0/24.
type scenario struct {
	node, peer     *testenv.Netns
	nodeIf, peerIf string
	vxlan          string
	peerIP         string
}

func newScenario(t *testing.T, subnet int, vxlanMTU string) scenario {
	t.Helper()
	s := scenario{
		node: testenv.NewNetns(t), peer: testenv.NewNetns(t),
		nodeIf: testenv.RandomName("dn"), peerIf: testenv.RandomName("dp"), vxlan: testenv.RandomName("vx"),
		peerIP: fmt.Sprintf("198.18.%d.2", subnet),
	}
	testenv.Run(t, "ip", "link", "add", s.nodeIf, "netns", s.node.Name, "mtu", "1500", "type", "veth",
		"peer", "name", s.peerIf, "netns", s.peer.Name, "mtu", "1500")
	s.node.Exec(t, "ip", "addr", "add", fmt.Sprintf("198.18.%d.1/24", subnet), "dev", s.nodeIf)
	s.peer.Exec(t, "ip", "addr", "add", s.peerIP+"/24", "dev", s.peerIf)
	s.node.Exec(t, "ip", "link", "set", s.nodeIf, "up")
	s.peer.Exec(t, "ip", "link", "set", s.peerIf, "up")
	// Unbound ("dev" not given), as in collectors/mtucheck's test: bound,
	// the kernel refuses an MTU that does not fit its underlay.
	s.node.Exec(t, "ip", "link", "add", s.vxlan, "type", "vxlan", "id", "42", "remote", s.peerIP, "dstport", "4789")
	s.node.Exec(t, "ip", "link", "set", s.vxlan, "mtu", vxlanMTU)
	// Resolve ARP first: no datagram waits in, or is dropped from, the
	// neighbour queue; only the drops the test makes happen.
	s.node.Exec(t, "ping", "-c", "1", "-W", "2", s.peerIP)
	return s
}

// send sends n UDP datagrams from the node to the peer's port, paced so
// the peer's backlog never overflows.
func (s scenario) send(t *testing.T, port, n int) {
	t.Helper()
	err := s.node.Do(func() error {
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.ParseIP(s.peerIP), Port: port}
		for i := 0; i < n; i++ {
			if _, err := c.WriteTo([]byte("netsonde doctor test"), to); err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
			if i%50 == 49 {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(doctor.Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// parseReport validates doctor's JSON against its schema and decodes it.
func parseReport(t *testing.T, schema *jsonschema.Schema, out string) doctor.Report {
	t.Helper()
	return decodeValid[doctor.Report](t, schema, out)
}

// The "done when": a VXLAN at 1500 over a 1500-byte veth, and nft
// dropping exactly 200 UDP packets during an 8-second run. Three doctors
// watch the same seconds: text in-process, JSON in-process, and JSON
// --from a running agent as user nobody; all must tell the same story.
func TestDoctorScenarioMTUAndDrops(t *testing.T) {
	testenv.RequireCommand(t, "nft", "ping")
	s := newScenario(t, 71, "1500")
	s.peer.Exec(t, "nft", "add table inet nsdtest; add chain inet nsdtest in { type filter hook input priority 0; }; "+
		"add rule inet nsdtest in udp dport 9999 drop")
	noFsync := []string{"--no-collector.fsyncprobe", "--no-collector.fsynctrace"}
	agent := testenv.StartAgent(t, s.node, noFsync...)

	text := startDoctor(t, s.node, false, append([]string{"--duration=8s"}, noFsync...)...)
	jsonIn := startDoctor(t, s.node, false, append([]string{"--duration=8s", "--output=json"}, noFsync...)...)
	jsonFrom := startDoctor(t, s.node, true, "--duration=8s", "--output=json", "--from="+agent.URL+"/metrics")
	for _, d := range []*doctorRun{text, jsonIn, jsonFrom} {
		d.waitObserving(t)
	}
	s.send(t, 9999, 200)

	code, out := text.wait(t)
	t.Logf("netsonde doctor --duration=8s:\n%s", out)
	if code != 1 {
		t.Errorf("exit status %d, want 1; log:\n%s", code, text.log())
	}
	for _, want := range []string{
		s.vxlan + " (vxlan): MTU 1500", "expected 1450", "NETFILTER_DROP", "200 on interface " + s.peerIf,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q", want)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if len([]rune(l)) > doctor.Width {
			t.Errorf("line over %d columns: %q", doctor.Width, l)
		}
		if strings.Contains(l, "\x1b[") {
			t.Errorf("colour on a pipe: %q", l)
		}
	}
	if *doctorSample != "" {
		if err := os.WriteFile(*doctorSample, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	schema := compileSchema(t)
	reports := map[string]doctor.Report{}
	for name, d := range map[string]*doctorRun{"in-process": jsonIn, "--from": jsonFrom} {
		code, out := d.wait(t)
		if code != 1 {
			t.Errorf("%s: exit status %d, want 1; log:\n%s", name, code, d.log())
		}
		reports[name] = parseReport(t, schema, out)
	}
	// Same findings at warning and above, and the same 200 drops. Findings
	// about "the host" from the collectors that see every socket and
	// packet of the machine (DNS, connects, retransmits, drop reasons) are
	// other tests' and processes' as much as this scenario's: whether one
	// lands in one 8 s window and not the other says nothing of doctor.
	// The neighbour tables are the kernel's, not a namespace's: other
	// tests fill them on purpose.
	machineWide := map[string]bool{"dns-timeouts": true, "tcp-connect-failures": true, "tcp-retransmits": true, "packet-drops": true,
		"neighbour-table-full": true}
	key := func(rep doctor.Report) []string {
		var keys []string
		for _, f := range rep.Findings {
			if f.Severity >= doctor.Warning && !machineWide[f.ID] {
				keys = append(keys, fmt.Sprintf("%s %s %s", f.Severity, f.ID, f.Subject))
			}
			if f.ID == "packet-drops" && f.Subject == "NETFILTER_DROP" && slices.Contains(f.Evidence, "200 on interface "+s.peerIf) {
				keys = append(keys, "200 NETFILTER_DROP on "+s.peerIf)
			}
		}
		slices.Sort(keys)
		return keys
	}
	in, from := key(reports["in-process"]), key(reports["--from"])
	if !slices.Equal(in, from) {
		t.Errorf("--from and in-process disagree:\nin-process: %q\n--from:     %q", in, from)
	}
	for _, want := range []string{"warning mtu-mismatch " + s.vxlan, "200 NETFILTER_DROP on " + s.peerIf} {
		if !slices.Contains(in, want) {
			t.Errorf("in-process JSON lacks %q: %q", want, in)
		}
	}
	if src := reports["--from"].Source; src != agent.URL+"/metrics" {
		t.Errorf("--from report's source %q", src)
	}
}

// A namespace whose VXLAN fits its underlay (1450 over 1500): nothing at
// warning or above, exit 0. Drops are left out: they are counted on the
// whole machine, and other tests' bursts would be this test's noise.
func TestDoctorScenarioHealthy(t *testing.T) {
	testenv.RequireCommand(t, "ping")
	s := newScenario(t, 72, "1450")
	d := startDoctor(t, s.node, false, "--duration=3s", "--collector.disable-defaults",
		"--collector.mtu", "--collector.mtucheck", "--collector.conntrack")
	code, out := d.wait(t)
	if code != 0 || !strings.HasPrefix(out, "netsonde doctor: healthy") {
		t.Errorf("exit status %d, want 0 and healthy:\n%s\nlog:\n%s", code, out, d.log())
	}
	for _, w := range []string{"WARNING", "CRITICAL"} {
		if strings.Contains(out, w) {
			t.Errorf("healthy namespace has a %s finding:\n%s", w, out)
		}
	}
}

// A conntrack table driven to 92% of a limit lowered to 200 (restored when
// the test ends, under testenv's lock shared with the other tests that
// lower it): above NetsondeConntrackTableFilling's 75%, below
// NetsondeConntrackTableFull's 95%, so a warning, exit 1.
func TestDoctorScenarioConntrackFilling(t *testing.T) {
	testenv.RequireCommand(t, "nft", "conntrack")
	const limit, flows = 200, 184
	src, dst := testenv.NewNetns(t), testenv.NewNetns(t)
	ifs, ifd := testenv.RandomName("ca"), testenv.RandomName("cb")
	testenv.Run(t, "ip", "link", "add", ifs, "netns", src.Name, "type", "veth", "peer", "name", ifd, "netns", dst.Name)
	src.Exec(t, "ip", "addr", "add", "198.18.75.1/24", "dev", ifs)
	dst.Exec(t, "ip", "addr", "add", "198.18.75.2/24", "dev", ifd)
	src.Exec(t, "ip", "link", "set", ifs, "up")
	dst.Exec(t, "ip", "link", "set", ifd, "up")
	// Conntrack only the test's flows, not doctor's scrapes over loopback
	// (as collectors/conntrack's test does); the receiver drops quietly, as
	// a port unreachable would remove the entry it answers.
	src.Exec(t, "nft", "add table inet nsdct; "+
		"add chain inet nsdct rawout { type filter hook output priority -300; }; add rule inet nsdct rawout oif lo notrack; "+
		"add chain inet nsdct rawpre { type filter hook prerouting priority -300; }; add rule inet nsdct rawpre iif lo notrack; "+
		"add chain inet nsdct out { type filter hook output priority 0; }; add rule inet nsdct out ct state new counter accept")
	dst.Exec(t, "nft", "add table inet quiet; add chain inet quiet in { type filter hook input priority 0; }; add rule inet quiet in udp dport 9 drop")

	testenv.SetSysctl(t, "net.netfilter.nf_conntrack_max", fmt.Sprint(limit))
	err := src.Do(func() error {
		to := &net.UDPAddr{IP: net.ParseIP("198.18.75.2"), Port: 9}
		for i := 0; i < flows; i++ {
			// One chosen source port per flow: ephemeral ports may repeat.
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("198.18.75.1"), Port: 21000 + i})
			if err != nil {
				return err
			}
			c.WriteTo([]byte("flow"), to)
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.TrimSpace(src.Exec(t, "conntrack", "-C")); n != fmt.Sprint(flows) {
		t.Fatalf("conntrack -C = %s, want %d", n, flows)
	}
	d := startDoctor(t, src, false, "--duration=1s", "--output=json", "--collector.disable-defaults", "--collector.conntrack")
	code, out := d.wait(t)
	if code != 1 {
		t.Errorf("exit status %d, want 1; log:\n%s", code, d.log())
	}
	rep := parseReport(t, compileSchema(t), out)
	if len(rep.Findings) == 0 || rep.Findings[0].ID != "conntrack-fill" || rep.Findings[0].Severity != doctor.Warning ||
		!strings.Contains(rep.Findings[0].Summary, "92% full (184 of 200 entries)") {
		t.Errorf("want a conntrack-fill warning at 92%% (184 of 200), got:\n%s", out)
	}
}

// A—R—B, the R—B link at 1,400 and R dropping its ICMP errors: probes
// above 1,400 vanish without "fragmentation needed", a path-MTU black
// hole (the probe of collectors/pmtu's test, read by doctor).
func TestDoctorScenarioPMTUBlackHole(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	a, r, b := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	a0, r0, r1, b0 := testenv.RandomName("pa"), testenv.RandomName("pr"), testenv.RandomName("pr"), testenv.RandomName("pb")
	testenv.Run(t, "ip", "link", "add", a0, "netns", a.Name, "type", "veth", "peer", "name", r0, "netns", r.Name)
	testenv.Run(t, "ip", "link", "add", r1, "netns", r.Name, "mtu", "1400", "type", "veth", "peer", "name", b0, "netns", b.Name, "mtu", "1400")
	a.Exec(t, "ip", "addr", "add", "198.18.73.1/24", "dev", a0)
	r.Exec(t, "ip", "addr", "add", "198.18.73.2/24", "dev", r0)
	r.Exec(t, "ip", "addr", "add", "198.18.74.1/24", "dev", r1)
	b.Exec(t, "ip", "addr", "add", "198.18.74.2/24", "dev", b0)
	for ns, ifs := range map[*testenv.Netns][]string{a: {a0}, r: {r0, r1}, b: {b0}} {
		for _, i := range ifs {
			ns.Exec(t, "ip", "link", "set", i, "up")
		}
	}
	// Per-namespace sysctls, gone with the namespace.
	r.Exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	a.Exec(t, "ip", "route", "add", "198.18.74.0/24", "via", "198.18.73.2")
	b.Exec(t, "ip", "route", "add", "198.18.73.0/24", "via", "198.18.74.1")
	r.Exec(t, "nft", "add table inet bh; add chain inet bh out { type filter hook output priority 0; }; "+
		"add rule inet bh out icmp type destination-unreachable drop")

	doctorFindsBlackHole(t, a, "198.18.74.2", 1400, func(doctor.Finding) bool { return true })
}

// doctorFindsBlackHole runs doctor for 8 s in ns with the path-MTU probe
// to target and checks that it exits 1 with a critical pmtu-blackhole
// towards target at path MTU pmtu, of which more holds.
func doctorFindsBlackHole(t *testing.T, ns *testenv.Netns, target string, pmtu int, more func(doctor.Finding) bool) {
	t.Helper()
	d := startDoctor(t, ns, false, "--duration=8s", "--output=json", "--collector.disable-defaults", "--collector.pmtu",
		"--pmtu.target="+target, "--pmtu.interval=1h", "--pmtu.gap=10ms", "--pmtu.timeout=300ms")
	code, out := d.wait(t)
	if code != 1 {
		t.Errorf("exit status %d, want 1; log:\n%s", code, d.log())
	}
	rep := parseReport(t, compileSchema(t), out)
	found := false
	for _, f := range rep.Findings {
		if f.ID == "pmtu-blackhole" && f.Subject == target && f.Severity == doctor.Critical &&
			slices.Contains(f.Evidence, fmt.Sprintf(`netsonde_path_mtu_bytes{target="%s"} = %d`, target, pmtu)) && more(f) {
			found = true
		}
	}
	if !found {
		t.Errorf("no critical pmtu-blackhole towards %s with path MTU %d:\n%s", target, pmtu, out)
	}
}

// The same over IPv6: A—R—B on fd00:5e::/112s, the R—B hop at 1,280 and
// R dropping the ICMPv6 packet-too-big it sends. Doctor names the IPv6
// black hole, with the path MTU the probe found and IPv6's next step.
func TestDoctorScenarioPMTUBlackHoleIPv6(t *testing.T) {
	p := testenv.NewPath6(t, 1280)
	p.DropPacketTooBig(t)
	doctorFindsBlackHole(t, p.A, testenv.Path6B, 1280, func(f doctor.Finding) bool {
		return strings.HasPrefix(f.Summary, "IPv6 path-MTU black hole") && strings.Contains(f.Next, "tracepath -6 -n "+testenv.Path6B)
	})
	if n := p.PacketTooBigDropped(t); n != 8 {
		t.Errorf("R dropped %d packet-too-big, want 8 (one per probe above 1,280)", n)
	}
}
