// Package benchkit is what the benchmark programs under hack/bench share:
// running a command, running code inside a network namespace, iperf3's
// throughput, and the kernel's per-program run-time accounting.
package benchkit

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netns"
)

// Sh runs a command, returning its output in the error when it fails.
func Sh(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %v\n%s", args, err, out)
	}
	return nil
}

// InNetns runs fn on a thread inside the named network namespace (ip
// netns), then puts the thread back; a thread that cannot go back stays
// locked and is retired with its goroutine.
func InNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Iperf runs the iperf3 client in namespace ns against server, with args,
// and returns what the server received in bits per second (TCP), or the
// sender's sum when there is no received sum (UDP).
func Iperf(ns, server string, args ...string) (float64, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "iperf3", "-c", server, "-J"}, args...)...).Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3: %v\n%s", err, out)
	}
	var j struct {
		End struct {
			SumReceived struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			Sum struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &j); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if j.End.SumReceived.BPS > 0 {
		return j.End.SumReceived.BPS, nil
	}
	return j.End.Sum.BPS, nil
}

// ProgStats is a program's total run time and run count as the kernel
// accounts them (BPF_ENABLE_STATS on), zero when it cannot be read.
func ProgStats(p *ebpf.Program) (time.Duration, uint64) {
	st, err := p.Stats()
	if err != nil {
		return 0, 0
	}
	return st.Runtime, st.RunCount
}
