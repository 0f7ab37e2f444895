package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// captureRun is `netsonde capture args...` run inside ns.
type captureRun struct {
	cmd            *exec.Cmd
	stdout, stderr *testenv.SyncBuffer
	exited         chan error
}

func startCapture(t *testing.T, ns *testenv.Netns, args ...string) *captureRun {
	t.Helper()
	all := append([]string{"--net=/run/netns/" + ns.Name, "--", testenv.AgentBinary(t), "capture"}, args...)
	c := &captureRun{cmd: exec.Command("nsenter", all...), stdout: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{}, exited: make(chan error, 1)}
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start capture: %v", err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

// wait returns the exit status, failing the test after timeout.
func (c *captureRun) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.exited:
		c.exited <- nil // for the cleanup
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("capture still running after %v; stderr:\n%s", timeout, c.stderr)
		return -1
	}
}

// pcapRecords reads a LINKTYPE_RAW pcap file's records.
func pcapRecords(t *testing.T, b []byte) [][]byte {
	t.Helper()
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 101 {
		t.Fatalf("not a little-endian LINKTYPE_RAW pcap file: % x", b[:min(len(b), 24)])
	}
	var out [][]byte
	for b = b[24:]; len(b) > 0; {
		if len(b) < 16 {
			t.Fatalf("truncated pcap record header")
		}
		n := int(binary.LittleEndian.Uint32(b[8:]))
		if len(b) < 16+n {
			t.Fatalf("truncated pcap record")
		}
		out = append(out, b[16:16+n])
		b = b[16+n:]
	}
	return out
}

// The test: nft drops 200 numbered datagrams while a capture of
// NETFILTER_DROP with --count 50 --write FILE reads a running agent, and a
// capture of another reason runs at the same time and gets none of them.
func TestCaptureNetfilterDrops(t *testing.T) {
	testenv.RequireCommand(t, "nft", "ping", "tcpdump")
	node, peer := testenv.NewNetns(t), testenv.NewNetns(t)
	nodeIf, peerIf := testenv.RandomName("cn"), testenv.RandomName("cp")
	testenv.Veth(t, node, peer, nodeIf, peerIf, "198.18.73.1/24", "198.18.73.2/24", 0)
	peer.Exec(t, "nft", "add table inet capt; add chain inet capt in { type filter hook input priority 0; }; "+
		"add rule inet capt in udp dport 9999 drop")
	node.Exec(t, "ping", "-c", "1", "-W", "2", "198.18.73.2")
	// Only the peer's drops: the machine's other tests drop meanwhile.
	a := testenv.StartAgent(t, node, "--collector.disable-defaults", "--collector.drops",
		fmt.Sprintf("--drops.only-netns=%d", peer.Cookie(t)))
	send := func(from, n int) {
		t.Helper()
		err := node.Do(func() error {
			c, err := net.ListenPacket("udp4", "198.18.73.1:40000")
			if err != nil {
				return err
			}
			defer c.Close()
			to := &net.UDPAddr{IP: net.ParseIP("198.18.73.2"), Port: 9999}
			for i := from; i < from+n; i++ {
				if _, err := c.WriteTo([]byte(fmt.Sprintf("datagram %04d", i)), to); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond) // 500/s: under the rate limit
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	baseline := a.Scrape(t)
	goroutines, _ := baseline.Value("go_goroutines", nil)
	fds, _ := baseline.Value("process_open_fds", nil)

	file := filepath.Join(t.TempDir(), "drops.pcap")
	main := startCapture(t, node, "--from="+a.URL, "--reason=NETFILTER_DROP", "--count=50", "--write="+file)
	other := startCapture(t, node, "--from="+a.URL+"/metrics", "--reason=NO_SOCKET")
	// Every other filter at once, in the kernel (interface) and in the
	// agent (host, port, protocol).
	filtered := startCapture(t, node, "--from="+a.URL, "--interface="+peerIf, "--host=198.18.73.1", "--port=9999",
		"--protocol=udp", "--count=5", "--output=json")
	testenv.Eventually(t, 10*time.Second, "three captures attached", func() bool {
		return strings.Count(a.Log.String(), "capture attached") == 3
	})
	send(0, 200)
	if code := main.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("capture exit status %d; stderr:\n%s", code, main.stderr)
	}
	a.WaitSum(t, "netsonde_packet_drops_total", map[string]string{"reason": "NETFILTER_DROP"}, 200)

	if code := filtered.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("filtered capture exit status %d; stderr:\n%s", code, filtered.stderr)
	}
	jl := strings.Split(strings.TrimSpace(filtered.stdout.String()), "\n")
	if len(jl) != 5 {
		t.Fatalf("filtered capture: %d JSON lines, want 5:\n%s", len(jl), filtered.stdout)
	}
	for i, l := range jl {
		var p struct {
			Reason, Interface, Protocol, Src, Dst string
			Sport, Dport, Len                     int
		}
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("JSON line %q: %v", l, err)
		}
		if p.Reason != "NETFILTER_DROP" || p.Interface != peerIf || p.Protocol != "udp" || p.Src != "198.18.73.1" ||
			p.Dst != "198.18.73.2" || p.Sport != 40000 || p.Dport != 9999 || p.Len != 41 {
			t.Errorf("JSON line %d: %+v", i, p)
		}
	}

	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	recs := pcapRecords(t, b)
	if len(recs) != 50 {
		t.Fatalf("pcap holds %d packets, want 50", len(recs))
	}
	for i, r := range recs {
		want := []byte(fmt.Sprintf("datagram %04d", i))
		if len(r) != 28+len(want) || r[0] != 0x45 || r[9] != 17 ||
			!bytes.Equal(r[12:16], []byte{198, 18, 73, 1}) || !bytes.Equal(r[16:20], []byte{198, 18, 73, 2}) ||
			binary.BigEndian.Uint16(r[20:]) != 40000 || binary.BigEndian.Uint16(r[22:]) != 9999 || !bytes.Equal(r[28:], want) {
			t.Fatalf("packet %d is not datagram %d from 198.18.73.1:40000 to 198.18.73.2:9999: % x", i, i, r)
		}
	}
	dump := testenv.Run(t, "tcpdump", "-nn", "-r", file)
	if n := strings.Count(dump, "198.18.73.1.40000 > 198.18.73.2.9999: UDP, length 13"); n != 50 {
		t.Fatalf("tcpdump -r reads %d of the 50 datagrams:\n%s", n, dump)
	}
	lines := strings.Split(strings.TrimSpace(main.stdout.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d text lines, want 50:\n%s", len(lines), main.stdout)
	}
	for _, want := range []string{"NETFILTER_DROP", " " + peerIf + " ", "udp 198.18.73.1:40000 > 198.18.73.2:9999 len 41 at "} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("text line %q does not say %q", lines[0], want)
		}
	}
	if !strings.Contains(main.stderr.String(), "50 packets captured (ended by count); 0 refused by the rate limit") {
		t.Errorf("summary: %s", main.stderr)
	}
	t.Logf("first line: %s\nsummary: %s", lines[0], main.stderr)

	// The other reason's capture saw none of them; its client goes away
	// mid-capture (killed) and the agent lets go of everything.
	if out := other.stdout.String(); out != "" {
		t.Fatalf("a capture of NO_SOCKET got packets:\n%s", out)
	}
	other.cmd.Process.Signal(syscall.SIGKILL)
	other.wait(t, 5*time.Second)
	testenv.Eventually(t, 10*time.Second, "both captures ended in the agent", func() bool {
		return strings.Count(a.Log.String(), "capture ended") == 3
	})
	var g, f float64
	testenv.Eventually(t, 10*time.Second, "goroutines and fds back to their baseline", func() bool {
		m := a.Scrape(t)
		g, _ = m.Value("go_goroutines", nil)
		f, _ = m.Value("process_open_fds", nil)
		return g <= goroutines && f <= fds
	})
	t.Logf("goroutines %v (baseline %v), fds %v (baseline %v)", g, goroutines, f, fds)

	// With no capture attached, the counts are exact as before.
	send(200, 300)
	a.WaitSum(t, "netsonde_packet_drops_total", map[string]string{"reason": "NETFILTER_DROP"}, 500)
	time.Sleep(500 * time.Millisecond)
	if got := a.Scrape(t).Sum("netsonde_packet_drops_total", map[string]string{"reason": "NETFILTER_DROP"}); got != 500 {
		t.Fatalf("NETFILTER_DROP %v, want 500", got)
	}
}

// Bad input: a malformed filter is named and exits 2, before or at the
// agent; an agent without the drops collector says so.
func TestCaptureBadInput(t *testing.T) {
	node := testenv.NewNetns(t)
	a := testenv.StartAgent(t, node, "--collector.disable-defaults", "--collector.drops", "--drops.only-netns=18446744073709551615") // a cookie no namespace has: nothing counted
	noDrops := testenv.StartAgent(t, node, "--web.listen-address=127.0.0.1:10334", "--collector.disable-defaults", "--collector.mtu")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--from=" + a.URL, "--reason=netfilter drop"}, `--reason="netfilter drop"`},
		{[]string{"--from=" + a.URL, "--reason=NO_SUCH_REASON"}, `--reason="NO_SUCH_REASON": this kernel has no such drop reason`},
		{[]string{"--from=" + a.URL, "--pod=web"}, `--pod="web": want NAMESPACE/NAME`},
		{[]string{"--from=" + a.URL, "--protocol=quic"}, `--protocol="quic"`},
		{[]string{"--from=" + a.URL, "--host=10.0.0.300"}, `--host="10.0.0.300"`},
		{[]string{"--from=" + a.URL, "--snaplen=1000"}, "--capture.allow-payload"},
		{[]string{"--from=" + noDrops.URL, "--count=1"}, "--no-collector.drops"},
	} {
		run := startCapture(t, node, c.args...)
		if code := run.wait(t, 10*time.Second); code != 2 {
			t.Errorf("%v: exit status %d, want 2; stderr: %s", c.args, code, run.stderr)
		}
		if !strings.Contains(run.stderr.String(), c.want) {
			t.Errorf("%v: stderr does not say %q: %s", c.args, c.want, run.stderr)
		}
	}
	// Four captures at once at most: a fifth is refused, and runs once one
	// of the four has ended.
	var four []*captureRun
	for range 4 {
		four = append(four, startCapture(t, node, "--from="+a.URL, "--reason=NO_SOCKET"))
	}
	testenv.Eventually(t, 10*time.Second, "four captures attached", func() bool {
		return strings.Count(a.Log.String(), "capture attached") == 4
	})
	fifth := startCapture(t, node, "--from="+a.URL, "--duration=1s")
	if code := fifth.wait(t, 10*time.Second); code != 2 || !strings.Contains(fifth.stderr.String(), "too many captures running at once") {
		t.Errorf("fifth capture: exit status %d, stderr: %s", code, fifth.stderr)
	}
	four[0].cmd.Process.Signal(syscall.SIGKILL)
	four[0].wait(t, 5*time.Second)
	testenv.Eventually(t, 10*time.Second, "a capture ended", func() bool {
		return strings.Count(a.Log.String(), "capture ended") == 1
	})
	fifth = startCapture(t, node, "--from="+a.URL, "--duration=1s")
	if code := fifth.wait(t, 10*time.Second); code != 0 {
		t.Errorf("fifth capture once one ended: exit status %d, stderr: %s", code, fifth.stderr)
	}
}

// captureSummary reads the summary line capture prints at the end.
func captureSummary(t *testing.T, stderr string) (packets, limited, nospace, unmatched uint64) {
	t.Helper()
	i := strings.Index(stderr, " packets captured (ended by ")
	if i < 0 {
		t.Fatalf("no summary in:\n%s", stderr)
	}
	start := strings.LastIndex(stderr[:i], "\n") + 1
	var ended string
	if _, err := fmt.Sscanf(stderr[start:], "%d packets captured (ended by %s %d refused by the rate limit (--capture.max-rate), %d lost for want of buffer, %d not matching",
		&packets, &ended, &limited, &nospace, &unmatched); err != nil {
		t.Fatalf("summary %q: %v", stderr[start:], err)
	}
	return
}

// A drop storm (300,000 datagrams as fast as one thread sends them, well
// over 100,000 a second) under two captures, one through a running agent
// and one in-process: each copies out at most its rate a second, what the
// limit refuses is counted so that copied + refused is every drop, the
// counts stay exact, and the agent's memory does not follow the storm.
func TestCaptureStormRateLimited(t *testing.T) {
	testenv.RequireCommand(t, "nft", "ping")
	node, peer := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, node, peer, testenv.RandomName("sn"), testenv.RandomName("sp"), "198.18.74.1/24", "198.18.74.2/24", 0)
	peer.Exec(t, "nft", "add table inet capt; add chain inet capt in { type filter hook input priority 0; }; "+
		"add rule inet capt in udp dport 9999 drop")
	node.Exec(t, "ping", "-c", "1", "-W", "2", "198.18.74.2")
	only := fmt.Sprintf("--drops.only-netns=%d", peer.Cookie(t))
	a := testenv.StartAgent(t, node, "--collector.disable-defaults", "--collector.drops", only, "--capture.max-rate=1000")
	before := a.Scrape(t)
	heap0, _ := before.Value("go_memstats_heap_inuse_bytes", nil)
	goroutines, _ := before.Value("go_goroutines", nil)
	fds, _ := before.Value("process_open_fds", nil)

	const n = 300000
	remote := startCapture(t, node, "--from="+a.URL, "--reason=NETFILTER_DROP", "--duration=12s", "--output=json")
	local := startCapture(t, node, "--reason=NETFILTER_DROP", "--duration=12s", "--capture.max-rate=1000",
		"--log.level=info", "--collector.disable-defaults", "--collector.drops", only)
	testenv.Eventually(t, 20*time.Second, "both captures attached", func() bool {
		return strings.Contains(a.Log.String(), "capture attached") && strings.Contains(local.stderr.String(), "capture attached")
	})
	began := time.Now()
	testenv.SendUDP(t, node, "198.18.74.2:9999", 16, n, 0)
	took := time.Since(began)
	t.Logf("%d datagrams in %v: %.0f/s", n, took, n/took.Seconds())
	a.WaitSum(t, "netsonde_packet_drops_total", map[string]string{"reason": "NETFILTER_DROP"}, n)
	heap1, _ := a.Scrape(t).Value("go_memstats_heap_inuse_bytes", nil)

	for name, c := range map[string]*captureRun{"--from": remote, "in-process": local} {
		if code := c.wait(t, 20*time.Second); code != 0 {
			t.Fatalf("%s: exit status %d; stderr:\n%s", name, code, c.stderr)
		}
		packets, limited, nospace, unmatched := captureSummary(t, c.stderr.String())
		t.Logf("%s: %d copied, %d refused by the rate limit, %d no space, %d unmatched", name, packets, limited, nospace, unmatched)
		if packets+limited+nospace+unmatched != n {
			t.Errorf("%s: %d copied + %d refused + %d no space + %d unmatched != %d drops", name, packets, limited, nospace, unmatched, n)
		}
		// The storm lasts a second or more: 1,000 a second at least;
		// 12 s of capture span 121 windows of 100 copies at most.
		if packets < 1000 || packets > 121*100 {
			t.Errorf("%s: %d packets copied, want between 1000 and 12100", name, packets)
		}
		// Past the agent's read timeout (10 s): only --duration ends it.
		if !strings.Contains(c.stderr.String(), "(ended by duration)") {
			t.Errorf("%s: not ended by --duration: %s", name, c.stderr)
		}
	}
	remotePackets, _, _, _ := captureSummary(t, remote.stderr.String())
	if lines := strings.Count(remote.stdout.String(), "\n"); uint64(lines) != remotePackets {
		t.Errorf("%d JSON lines, %d packets", lines, remotePackets)
	}
	if got := a.Scrape(t).Sum("netsonde_packet_drops_total", map[string]string{"reason": "NETFILTER_DROP"}); got != n {
		t.Errorf("NETFILTER_DROP %v, want exactly %d", got, n)
	}
	t.Logf("heap in use %.1f MiB before the storm, %.1f MiB after", heap0/(1<<20), heap1/(1<<20))
	if heap1-heap0 > 8<<20 {
		t.Errorf("the agent's heap grew by %.1f MiB during the storm", (heap1-heap0)/(1<<20))
	}
	testenv.Eventually(t, 10*time.Second, "goroutines and fds back to their baseline", func() bool {
		m := a.Scrape(t)
		g, _ := m.Value("go_goroutines", nil)
		f, _ := m.Value("process_open_fds", nil)
		return g <= goroutines && f <= fds
	})
}
