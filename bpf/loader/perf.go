package loader

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// perfLink is a classic tracepoint attachment: a perf event on the
// tracepoint with the program set on it. It is opened by id, so it needs no
// tracefs once the id is known (see ReadEvent).
type perfLink struct{ fd int }

// attachTracepoint opens a perf event for tracepoint id and runs prog on it.
// The ioctl form works on every kernel since 4.7; the event fires on every
// CPU for every thread (pid -1, cpu 0 is how tracepoints are opened for BPF).
func attachTracepoint(prog *ebpf.Program, id uint64) (*perfLink, error) {
	attr := unix.PerfEventAttr{
		Type:        unix.PERF_TYPE_TRACEPOINT,
		Config:      id,
		Sample:      1,
		Wakeup:      1,
		Sample_type: unix.PERF_SAMPLE_RAW,
	}
	attr.Size = uint32(unsafe.Sizeof(attr))
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("perf_event_open tracepoint %d: %w", id, err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach program to tracepoint %d: %w", id, err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("enable tracepoint %d: %w", id, err)
	}
	return &perfLink{fd: fd}, nil
}

// Close detaches the program: closing the event's last fd removes it.
func (l *perfLink) Close() error { return unix.Close(l.fd) }
