package ethtool

// The SIOCETHTOOL requests: ETHTOOL_GDRVINFO for the number of statistics,
// ETHTOOL_GSTRINGS for their names, ETHTOOL_GSTATS for their values. The
// ethtool netlink interface has the names (ETHTOOL_MSG_STRSET_GET) but
// not the driver's values, which only the ioctl returns.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	ethtoolGDrvInfo = 0x3
	ethtoolGStrings = 0x1b
	ethtoolGStats   = 0x1d
	ethSSStats      = 1
	ethGStringLen   = 32
	// nStatsOffset is ethtool_drvinfo.n_stats: cmd, five 32-byte
	// strings, 12 reserved bytes, n_priv_flags.
	nStatsOffset = 4 + 5*32 + 12 + 4
	drvInfoSize  = nStatsOffset + 4*5
)

// room is how many entries a buffer for n statistics holds: the kernel
// writes as many as the driver has at the read, whatever the request
// said, and a driver whose queues were just reconfigured can have many
// more than it had at the count (mlx5: about 30 per channel).
func room(n int) int { return 2*n + 1024 }

// ifreq is struct ifreq with ifr_data.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ioctls asks one interface at a time over a datagram socket.
type ioctls struct {
	fd int
	// buf is reused by every request of a round (one goroutine).
	buf []byte
}

// scratch is a zeroed buffer of n bytes.
func (s *ioctls) scratch(n int) []byte {
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	b := s.buf[:n]
	clear(b)
	return b
}

func openIoctls() (*ioctls, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ethtool socket: %w", err)
	}
	return &ioctls{fd: fd}, nil
}

func (s *ioctls) Close() error { return unix.Close(s.fd) }

func (s *ioctls) do(dev string, buf []byte) error {
	if len(dev) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", dev)
	}
	var r ifreq
	copy(r.name[:], dev)
	r.data = unsafe.Pointer(&buf[0])
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&r)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return errno
	}
	return nil
}

// count is the number of the driver's statistics (0: it has none).
func (s *ioctls) count(dev string) (int, error) {
	buf := s.scratch(drvInfoSize)
	binary.NativeEndian.PutUint32(buf, ethtoolGDrvInfo)
	if err := s.do(dev, buf); err != nil {
		return 0, err
	}
	return int(binary.NativeEndian.Uint32(buf[nStatsOffset:])), nil
}

// names returns the driver's statistics' names, n of them.
func (s *ioctls) names(dev string, n int) ([]string, error) {
	buf := s.scratch(12 + room(n)*ethGStringLen)
	binary.NativeEndian.PutUint32(buf, ethtoolGStrings)
	binary.NativeEndian.PutUint32(buf[4:], ethSSStats)
	binary.NativeEndian.PutUint32(buf[8:], uint32(n))
	if err := s.do(dev, buf); err != nil {
		return nil, err
	}
	got := int(binary.NativeEndian.Uint32(buf[8:]))
	if got > room(n) {
		return nil, fmt.Errorf("%s: %d statistics' names, room for %d", dev, got, room(n))
	}
	out := make([]string, got)
	for i := range out {
		b := buf[12+i*ethGStringLen : 12+(i+1)*ethGStringLen]
		if j := bytes.IndexByte(b, 0); j >= 0 {
			b = b[:j]
		}
		out[i] = string(b)
	}
	return out, nil
}

// values returns the driver's statistics' values; their number tells the
// caller whether its names are still the driver's.
func (s *ioctls) values(dev string, n int) ([]uint64, error) {
	buf := s.scratch(8 + room(n)*8)
	binary.NativeEndian.PutUint32(buf, ethtoolGStats)
	binary.NativeEndian.PutUint32(buf[4:], uint32(n))
	if err := s.do(dev, buf); err != nil {
		return nil, err
	}
	got := int(binary.NativeEndian.Uint32(buf[4:]))
	if got > room(n) {
		return nil, fmt.Errorf("%s: %d statistics, room for %d", dev, got, room(n))
	}
	out := make([]uint64, got)
	for i := range out {
		out[i] = binary.NativeEndian.Uint64(buf[8+8*i:])
	}
	return out, nil
}
