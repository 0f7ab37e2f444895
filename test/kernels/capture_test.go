package kernels_test

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// (d) netsonde capture through a running agent on this kernel: 10
// datagrams to a closed port on a veth peer come out as exactly 10
// NO_SOCKET records whose headers the kernel copied (addresses, ports,
// length), by the hook auto picks and by the classic tracepoint forced:
// each entry point runs the capture path, and the verifier of each kernel
// must accept it.
func TestCaptureDrops(t *testing.T) {
	guest(t)
	for _, mode := range []string{"auto", "tracepoint"} {
		t.Run(mode, func(t *testing.T) {
			nsAgent, nsPeer := testenv.NewNetns(t), testenv.NewNetns(t)
			testenv.Veth(t, nsAgent, nsPeer, "ca0", "cb0", "198.18.43.1/24", "198.18.43.2/24", 0)
			args := []string{"--collector.disable-defaults", "--collector.drops"}
			if mode != "auto" {
				args = append(args, "--drops.attach="+mode)
			}
			a := testenv.StartAgent(t, nsAgent, args...)
			nsAgent.Exec(t, "ping", "-c", "1", "-W", "2", "198.18.43.2") // ARP first

			// Only the peer's interface: the port unreachables that come
			// back are NO_SOCKET drops on ca0 too.
			stdout, stderr := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
			c := nsAgent.Command(testenv.AgentBinary(t), "capture", "--from="+a.URL, "--reason=NO_SOCKET",
				"--interface=cb0", "--count=10", "--output=json")
			c.Stdout, c.Stderr = stdout, stderr
			if err := c.Start(); err != nil {
				t.Fatalf("start capture: %v", err)
			}
			exited := make(chan error, 1)
			go func() { exited <- c.Wait() }()
			t.Cleanup(func() {
				c.Process.Kill()
				<-exited
			})
			testenv.Eventually(t, 10*time.Second, "capture attached", func() bool {
				return strings.Contains(a.Log.String(), "capture attached")
			})

			err := nsAgent.Do(func() error {
				s, err := net.ListenPacket("udp4", "198.18.43.1:40000")
				if err != nil {
					return err
				}
				defer s.Close()
				to := &net.UDPAddr{IP: net.ParseIP("198.18.43.2"), Port: 7} // nothing listens
				for i := range 10 {
					if _, err := s.WriteTo(fmt.Appendf(nil, "datagram %04d", i), to); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				exited <- err // for the cleanup
				if err != nil {
					t.Fatalf("capture: %v; stderr:\n%s\nagent log:\n%s", err, stderr, a.Log)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("capture still running after 10s; stdout:\n%s\nstderr:\n%s\nagent log:\n%s", stdout, stderr, a.Log)
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			if len(lines) != 10 {
				t.Fatalf("%d JSON lines, want 10:\n%s\nstderr:\n%s", len(lines), stdout, stderr)
			}
			for i, l := range lines {
				var p struct {
					Reason, Interface, Protocol, Src, Dst string
					Sport, Dport, Len                     int
				}
				if err := json.Unmarshal([]byte(l), &p); err != nil {
					t.Fatalf("JSON line %q: %v", l, err)
				}
				// 20 (IP) + 8 (UDP) + 13 ("datagram NNNN"): the length
				// from the IP header, although UDP has pulled it by
				// the time it finds no socket (skb->len is 21 there).
				if p.Reason != "NO_SOCKET" || p.Interface != "cb0" || p.Protocol != "udp" || p.Src != "198.18.43.1" ||
					p.Dst != "198.18.43.2" || p.Sport != 40000 || p.Dport != 7 || p.Len != 41 {
					t.Errorf("JSON line %d: %+v", i, p)
				}
			}
			if !strings.Contains(stderr.String(), "10 packets captured (ended by count); 0 refused by the rate limit") {
				t.Errorf("summary: %s", stderr)
			}
		})
	}
}
