package drops

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf/ringbuf"
)

// MaxCaptures, MaxCaptureReasons and MaxSnaplen are drops.c's bounds: the
// captures attached at once, the reasons one capture's filter names, and
// the bytes of a packet one record holds.
const (
	MaxCaptures       = 4
	MaxCaptureReasons = 8
	MaxSnaplen        = 1024
)

// CaptureFilter is what the kernel matches a drop against for one capture.
// Zero fields match anything.
type CaptureFilter struct {
	Reasons  []uint32
	Netns    uint64 // a namespace's cookie
	Ifindex  uint32
	Protocol uint16 // EtherType, host order
	Snaplen  uint32
	Rate     uint32 // records a second at most
}

// CaptureStats is one capture's counts in the kernel since it was set.
type CaptureStats struct {
	// Emitted: records written to the ring buffer; RateLimited: matching
	// drops the rate limit refused; NoSpace: admitted but the ring
	// buffer was full.
	Emitted, RateLimited, NoSpace uint64
}

// CaptureRecord is one dropped packet as drops.c's capture_record has it.
type CaptureRecord struct {
	KtimeNs  uint64
	Location uint64
	Reason   uint32
	Ifindex  uint32
	Netns    uint64 // the namespace's cookie
	Len      uint32
	Protocol uint16
	Captures uint16 // bit i: capture slot i matched
	Data     []byte // from the network header, Len bytes at most
}

// recordHeader is the size of capture_record before data.
const recordHeader = 8 + 8 + 8 + 4*4 + 2 + 2

// SetCapture sets capture slot's filter, or clears it (nil), then switches
// the program's capture path on while any slot is set and off when none
// is: with none, the program pays one array lookup for it.
func (p *Probe) SetCapture(slot int, f *CaptureFilter) error {
	if slot < 0 || slot >= MaxCaptures {
		return fmt.Errorf("capture slot %d out of range", slot)
	}
	filters, states := p.maps.CaptureFilters, p.maps.CaptureStates
	var v bpfCaptureFilter
	if f != nil {
		if len(f.Reasons) > MaxCaptureReasons {
			return fmt.Errorf("at most %d reasons per capture", MaxCaptureReasons)
		}
		v = bpfCaptureFilter{Active: 1, Netns: f.Netns, Ifindex: f.Ifindex, Protocol: f.Protocol,
			Nreasons: uint16(len(f.Reasons)), Snaplen: min(f.Snaplen, MaxSnaplen), Rate: f.Rate}
		copy(v.Reasons[:], f.Reasons)
		// Its counts start from zero, before its filter is live.
		if err := states.Put(uint32(slot), bpfCaptureState{}); err != nil {
			return fmt.Errorf("reset capture state: %w", err)
		}
	}
	if err := filters.Put(uint32(slot), v); err != nil {
		return fmt.Errorf("set capture filter: %w", err)
	}
	var on uint32
	for i := range uint32(MaxCaptures) {
		var g bpfCaptureFilter
		if err := filters.Lookup(i, &g); err != nil {
			return fmt.Errorf("read capture filter: %w", err)
		}
		on += g.Active
	}
	if err := p.maps.CaptureOn.Put(uint32(0), on); err != nil {
		return fmt.Errorf("switch capture: %w", err)
	}
	return nil
}

// CaptureStats reads one slot's counts.
func (p *Probe) CaptureStats(slot int) (CaptureStats, error) {
	var s bpfCaptureState
	if err := p.maps.CaptureStates.Lookup(uint32(slot), &s); err != nil {
		return CaptureStats{}, fmt.Errorf("read capture state: %w", err)
	}
	return CaptureStats{Emitted: s.Emitted, RateLimited: s.Refused, NoSpace: s.Nospace}, nil
}

// CaptureReader opens a reader of the capture ring buffer; Close it when
// no capture is attached.
func (p *Probe) CaptureReader() (*ringbuf.Reader, error) {
	r, err := ringbuf.NewReader(p.maps.CaptureRing)
	if err != nil {
		return nil, fmt.Errorf("open capture ring buffer: %w", err)
	}
	return r, nil
}

// ParseCaptureRecord decodes one ring buffer sample written by an object
// of byte order e (the probe's ByteOrder). Data aliases b.
func ParseCaptureRecord(b []byte, e binary.ByteOrder) (CaptureRecord, error) {
	if len(b) < recordHeader {
		return CaptureRecord{}, errors.New("capture record too short")
	}
	r := CaptureRecord{KtimeNs: e.Uint64(b[0:]), Location: e.Uint64(b[8:]), Netns: e.Uint64(b[16:]),
		Reason: e.Uint32(b[24:]), Ifindex: e.Uint32(b[28:]), Len: e.Uint32(b[32:])}
	caplen := e.Uint32(b[36:])
	r.Protocol, r.Captures = e.Uint16(b[40:]), e.Uint16(b[42:])
	if int(caplen) > len(b)-recordHeader || caplen > MaxSnaplen {
		return CaptureRecord{}, fmt.Errorf("capture record: caplen %d beyond its %d bytes", caplen, len(b)-recordHeader)
	}
	r.Data = b[recordHeader : recordHeader+int(caplen)]
	return r, nil
}
