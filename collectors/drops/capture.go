package drops

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	bpfdrops "github.com/netsonde/netsonde/bpf/drops"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/capture"
	"github.com/netsonde/netsonde/internal/decode"
)

// DefaultCaptureRate is --capture.max-rate's default: records a second
// one capture may copy out of the kernel.
const DefaultCaptureRate = 1000

// captureProbe is what a capture uses of the loaded program.
type captureProbe interface {
	SetCapture(slot int, f *bpfdrops.CaptureFilter) error
	CaptureStats(slot int) (bpfdrops.CaptureStats, error)
	CaptureReader() (*ringbuf.Reader, error)
	// ByteOrder is the loaded object's, in which it writes records.
	ByteOrder() binary.ByteOrder
}

// The loaded program captures: a method missing from it would switch
// capture off (drops.go asserts the interface), not fail the build.
var _ captureProbe = (*bpfdrops.Probe)(nil)

// capturer runs the captures: a slot in the kernel's filter table each,
// and one reader of the ring buffer, open while any capture is, handing
// each record to the sessions whose slot matched it.
type capturer struct {
	probe captureProbe

	// mu orders attach and detach (slots, the reader's life); smu guards
	// sessions, which the reader takes alone: stopReader waits for the
	// reader under mu, and a reader waiting for mu would never end.
	mu       sync.Mutex
	smu      sync.RWMutex
	sessions [bpfdrops.MaxCaptures]*session
	reader   *ringbuf.Reader
	done     chan struct{}
	syms     symbols
}

type session struct {
	ch chan bpfdrops.CaptureRecord
	// lost: records the session had no room for (it reads too slowly).
	lost atomic.Uint64
}

// sessionQueue is the records a session holds that its client has not
// taken yet: with the rate limit, a second's worth at most is in flight.
const sessionQueue = 256

// Capture implements collectors.Capturer.
func (c *collector) Capture(ctx context.Context, req capture.Request, emit func(*capture.Packet) error) (capture.Summary, error) {
	if c.capt == nil {
		return capture.Summary{}, errors.New("this drop counter cannot capture")
	}
	if err := req.Check(); err != nil {
		return capture.Summary{}, err
	}
	f, err := c.kernelFilter(req)
	if err != nil {
		return capture.Summary{}, err
	}
	slot, s, err := c.capt.attach(f)
	if err != nil {
		return capture.Summary{}, err
	}
	c.deps.Logger.Info("capture attached", "slot", slot, "reasons", req.Reasons, "netns", f.Netns, "ifindex", f.Ifindex, "rate", f.Rate, "snaplen", f.Snaplen)
	sum := capture.Summary{}
	var cancel context.CancelFunc = func() {}
	if req.Duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, req.Duration)
	}
	defer cancel()
	boot := bootTime()
	ended, emitErr := "", error(nil)
	for ended == "" {
		select {
		case <-ctx.Done():
			ended = "client"
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				ended = "duration"
			}
		case r := <-s.ch:
			p := c.packet(r, boot)
			if !c.matches(req, p) {
				sum.Unmatched++
				continue
			}
			if emitErr = emit(p); emitErr != nil {
				ended = "client"
				break
			}
			sum.Packets++
			if req.Count > 0 && sum.Packets >= uint64(req.Count) {
				ended = "count"
			}
		}
	}
	sum.Ended = ended
	st, err := c.capt.detach(slot)
	sum.RateLimited, sum.NoSpace = st.RateLimited, st.NoSpace+s.lost.Load()
	if err != nil {
		return sum, err
	}
	return sum, nil
}

// kernelFilter turns what the kernel can match into its filter: reasons,
// the pod's namespace, the interface, the EtherType.
func (c *collector) kernelFilter(req capture.Request) (bpfdrops.CaptureFilter, error) {
	f := bpfdrops.CaptureFilter{Rate: uint32(req.Rate), Snaplen: uint32(req.Snaplen),
		Protocol: capture.EtherType(req.Protocol)}
	if f.Rate == 0 {
		f.Rate = DefaultCaptureRate
	}
	if f.Snaplen == 0 {
		f.Snaplen = capture.DefaultSnaplen
	}
	f.Snaplen = min(f.Snaplen, bpfdrops.MaxSnaplen)
	if len(req.Reasons) > bpfdrops.MaxCaptureReasons {
		return f, fmt.Errorf("%w: --reason: at most %d", capture.ErrBadFilter, bpfdrops.MaxCaptureReasons)
	}
	for _, name := range req.Reasons {
		v, ok := c.reasons.Value(name)
		if !ok {
			return f, fmt.Errorf("%w: --reason=%q: this kernel has no such drop reason", capture.ErrBadFilter, name)
		}
		f.Reasons = append(f.Reasons, v)
	}
	snap := c.deps.Net.Snapshot()
	if req.Pod != "" {
		ns, name, _ := strings.Cut(req.Pod, "/")
		for cookie := range snap.Namespaces() {
			if p, ok := c.deps.Pods.ByNetns(cookie); ok && p.Namespace == ns && p.Name == name {
				f.Netns = cookie
			}
		}
		if f.Netns == 0 {
			return f, fmt.Errorf("%w: --pod=%q: no such pod's network namespace on this node", capture.ErrBadFilter, req.Pod)
		}
	}
	if req.Interface != "" {
		if f.Netns != 0 {
			if ns, _, _ := snap.Lookup(f.Netns); ns != nil {
				for idx, l := range ns.Links {
					if l.Name == req.Interface {
						f.Ifindex = uint32(idx)
					}
				}
			}
		} else {
			for _, l := range c.deps.Net.Links() {
				if l.Name == req.Interface {
					f.Ifindex, f.Netns = uint32(l.Index), snap.Own()
				}
			}
		}
		// An interface of another namespace with that name: matched by
		// name in user space, after the kernel's other filters.
	}
	return f, nil
}

// matches applies what the kernel did not: names, the pod's Kubernetes
// namespace, host, port and IP protocol.
func (c *collector) matches(req capture.Request, p *capture.Packet) bool {
	if req.Interface != "" && p.Interface != req.Interface {
		return false
	}
	if req.Namespace != "" && p.Namespace != req.Namespace {
		return false
	}
	if req.Pod != "" && p.Namespace+"/"+p.Pod != req.Pod {
		return false
	}
	return req.MatchTuple(p.Tuple)
}

func (c *collector) packet(r bpfdrops.CaptureRecord, boot time.Time) *capture.Packet {
	p := &capture.Packet{Time: boot.Add(time.Duration(r.KtimeNs)), Reason: c.reasons.Name(r.Reason),
		Netns: r.Netns, EtherType: decode.EtherTypeName(r.Protocol), Len: int(r.Len), Data: r.Data,
		Tuple: capture.Decode(r.Data)}
	p.Location = c.capt.syms.name(c.deps.Proc.Root(), r.Location)
	if r.Netns != 0 {
		snap := c.deps.Net.Snapshot()
		p.Interface = c.name(snap, r.Netns, int(r.Ifindex)).name
		if r.Netns != snap.Own() {
			if pod, ok := c.deps.Pods.ByNetns(r.Netns); ok {
				p.Namespace, p.Pod = pod.Namespace, pod.Name
			}
		}
	}
	if p.Interface == "" && r.Ifindex != 0 {
		p.Interface = "if" + strconv.Itoa(int(r.Ifindex))
	}
	return p
}

// bootTime is the wall-clock time of CLOCK_MONOTONIC's zero, which is
// bpf_ktime_get_ns'.
func bootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// attach takes a free slot and switches it on; the ring reader starts
// with the first capture.
func (k *capturer) attach(f bpfdrops.CaptureFilter) (int, *session, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.smu.RLock()
	slot := slices.Index(k.sessions[:], nil)
	k.smu.RUnlock()
	if slot < 0 {
		return 0, nil, collectors.ErrCaptureBusy
	}
	if k.reader == nil {
		r, err := k.probe.CaptureReader()
		if err != nil {
			return 0, nil, err
		}
		k.reader, k.done = r, make(chan struct{})
		go k.read(r, k.probe.ByteOrder(), k.done)
	}
	s := &session{ch: make(chan bpfdrops.CaptureRecord, sessionQueue)}
	k.setSession(slot, s)
	if err := k.probe.SetCapture(slot, &f); err != nil {
		k.setSession(slot, nil)
		k.stopReader()
		return 0, nil, err
	}
	return slot, s, nil
}

// detach switches the slot off, reads its counts, and stops the reader
// with the last capture: nothing of a capture outlives it.
func (k *capturer) detach(slot int) (bpfdrops.CaptureStats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.probe.SetCapture(slot, nil)
	st, serr := k.probe.CaptureStats(slot)
	k.setSession(slot, nil)
	k.stopReader()
	return st, errors.Join(err, serr)
}

func (k *capturer) setSession(slot int, s *session) {
	k.smu.Lock()
	k.sessions[slot] = s
	k.smu.Unlock()
}

// stopReader closes the reader if no session is left; under mu.
func (k *capturer) stopReader() {
	k.smu.RLock()
	busy := slices.ContainsFunc(k.sessions[:], func(s *session) bool { return s != nil })
	k.smu.RUnlock()
	if k.reader == nil || busy {
		return
	}
	k.reader.Close()
	<-k.done
	k.reader, k.done = nil, nil
	k.syms.reset()
}

func (k *capturer) read(r *ringbuf.Reader, bo binary.ByteOrder, done chan struct{}) {
	defer close(done)
	var rec ringbuf.Record
	for {
		if err := r.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		cr, err := bpfdrops.ParseCaptureRecord(rec.RawSample, bo)
		if err != nil {
			continue
		}
		cr.Data = slices.Clone(cr.Data) // RawSample is reused
		k.smu.RLock()
		for i, s := range k.sessions {
			if s == nil || cr.Captures&(1<<i) == 0 {
				continue
			}
			select {
			case s.ch <- cr:
			default:
				s.lost.Add(1)
			}
		}
		k.smu.RUnlock()
	}
}

// symbols names kernel text addresses from /proc/kallsyms, read once per
// address new to the capture (kfree_skb is called from a few tens of
// places), not held whole in memory.
type symbols struct {
	mu    sync.Mutex
	cache map[uint64]string
}

const maxSymbols = 1024

func (s *symbols) reset() {
	s.mu.Lock()
	s.cache = nil
	s.mu.Unlock()
}

func (s *symbols) name(procRoot string, addr uint64) string {
	if addr == 0 {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.cache[addr]; ok {
		return n
	}
	n := lookupSymbol(filepath.Join(procRoot, "kallsyms"), addr)
	if s.cache == nil || len(s.cache) >= maxSymbols {
		s.cache = map[uint64]string{}
	}
	s.cache[addr] = n
	return n
}

// lookupSymbol finds the text symbol at or below addr: "func+0xoff", or
// the address in hex when kallsyms hides addresses (kptr_restrict).
func lookupSymbol(path string, addr uint64) string {
	hex := "0x" + strconv.FormatUint(addr, 16)
	f, err := os.Open(path)
	if err != nil {
		return hex
	}
	defer f.Close()
	var best uint64
	var bestName string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		a, rest, ok := strings.Cut(line, " ")
		if !ok || len(rest) < 3 || (rest[0] != 't' && rest[0] != 'T') {
			continue
		}
		v, err := strconv.ParseUint(a, 16, 64)
		if err != nil || v > addr || v <= best {
			continue
		}
		best, bestName = v, rest[2:]
		if i := strings.IndexAny(bestName, " \t"); i >= 0 {
			bestName = bestName[:i]
		}
	}
	if bestName == "" || addr-best > 1<<20 {
		return hex
	}
	return fmt.Sprintf("%s+0x%x", bestName, addr-best)
}
