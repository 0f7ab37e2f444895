package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"sort"
	"syscall"
	"time"

	ct "github.com/florianl/go-conntrack"
	"golang.org/x/sys/unix"

	kdecode "github.com/netsonde/netsonde/internal/decode"
)

const msgGet = 1 // IPCTNL_MSG_CT_GET

type protoState struct{ proto, state string }

type sourceCount struct {
	addr  netip.Addr
	count uint64
}

// breakdown is the result of one dump of the table: who fills it.
type breakdown struct {
	byState  map[protoState]uint64
	top      []sourceCount // most entries first, at most topN
	others   uint64        // entries of sources beyond the tracked ones
	entries  uint64
	took     time.Duration
	finished time.Time
}

// dumpBreakdown streams the conntrack table of the calling thread's network
// namespace once, decoding each entry with go-conntrack and keeping only
// counters: memory is bounded by maxSources, whatever the table's size
// (go-conntrack's own Dump returns every entry as a slice, which for 250,000
// entries is tens of MiB). The cost is O(entries) in CPU, which is why it
// runs off the scrape path and no more often than a flag allows.
func dumpBreakdown(ctx context.Context, topN, maxSources int) (breakdown, error) {
	begin := time.Now()
	b := breakdown{byState: map[protoState]uint64{}}
	fd, err := send(msgGet, unix.NLM_F_DUMP)
	if err != nil {
		return b, err
	}
	defer unix.Close(fd)

	quiet := log.New(io.Discard, "", 0)
	sources := make(map[netip.Addr]uint64)
	buf := make([]byte, 64<<10)
	for {
		// A million entries take seconds to read, more on a loaded
		// node: an agent told to stop does not wait for the rest.
		if err := ctx.Err(); err != nil {
			return b, err
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return b, fmt.Errorf("receive dump: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return b, fmt.Errorf("parse dump: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				b.took, b.finished = time.Since(begin), time.Now()
				b.top, b.others = topSources(sources, topN, b.others)
				return b, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
						return b, fmt.Errorf("dump: %w", syscall.Errno(-code))
					}
				}
				continue
			}
			c, err := ct.ParseAttributes(quiet, m.Data)
			if err != nil || c.Origin == nil || c.Origin.Proto == nil || c.Origin.Proto.Number == nil {
				continue
			}
			b.entries++
			ps := protoState{proto: kdecode.IPProtoName(*c.Origin.Proto.Number)}
			if c.ProtoInfo != nil && c.ProtoInfo.TCP != nil && c.ProtoInfo.TCP.State != nil {
				ps.state = kdecode.ConntrackTCPStateName(*c.ProtoInfo.TCP.State)
			}
			b.byState[ps]++
			if c.Origin.Src == nil {
				continue
			}
			addr, ok := netip.AddrFromSlice(*c.Origin.Src)
			if !ok {
				continue
			}
			addr = addr.Unmap()
			if _, tracked := sources[addr]; tracked || len(sources) < maxSources {
				sources[addr]++
			} else {
				b.others++
			}
		}
	}
}

func topSources(sources map[netip.Addr]uint64, n int, others uint64) ([]sourceCount, uint64) {
	all := make([]sourceCount, 0, len(sources))
	for a, c := range sources {
		all = append(all, sourceCount{a, c})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].count != all[j].count {
			return all[i].count > all[j].count
		}
		return all[i].addr.Less(all[j].addr)
	})
	if len(all) > n {
		for _, s := range all[n:] {
			others += s.count
		}
		all = all[:n]
	}
	return all, others
}

// send opens a netfilter netlink socket in the calling thread's network
// namespace and sends one ctnetlink request on it.
func send(msgType uint16, flags uint16) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind netlink: %w", err)
	}
	// A reply that never comes must not hang a scrape.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink timeout: %w", err)
	}
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], unix.NFNL_SUBSYS_CTNETLINK<<8|msgType)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|flags)
	binary.NativeEndian.PutUint32(req[8:12], 1)
	copy(req[16:], []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0})
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("send ctnetlink request: %w", err)
	}
	return fd, nil
}

// getOnce sends a non-dump request and returns the payloads of the
// messages of its one reply.
func getOnce(msgType uint16) ([][]byte, error) {
	fd, err := send(msgType, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("parse reply: %w", err)
	}
	var out [][]byte
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR {
			if len(m.Data) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
					return nil, syscall.Errno(-code)
				}
			}
			continue
		}
		out = append(out, m.Data)
	}
	return out, nil
}
