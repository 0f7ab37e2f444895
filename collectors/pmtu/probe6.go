package pmtu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ICMPv6 echo (RFC 4443) and the sizes of an IPv6 probe's headers.
const (
	icmp6EchoRequest = 128
	icmp6EchoReply   = 129
	ipv6HeaderLen    = 40
	icmp6HeaderLen   = 8
	soEEOriginICMP6  = 3 // SO_EE_ORIGIN_ICMP6: the error came from a packet-too-big, not from this host
)

// probe6 sends one ICMPv6 echo request that makes an IPv6 packet of size
// bytes and tells what became of it: an echo reply (passed), a
// packet-too-big naming the hop's MTU (fragNeeded), nothing (lost), or a
// refusal by the local device (tooBig). IPv6 routers never fragment, so a
// packet too big for a hop is dropped there with a packet-too-big back;
// IPV6_DONTFRAG keeps this host from fragmenting it at the source, and
// IPV6_PMTUDISC_PROBE from sizing it by a path MTU the kernel learned
// earlier (the search would otherwise only ever see the cached value).
// Each probe has its own socket, so no answer to an earlier probe is
// taken for this one's.
//
// Echo, not UDP as over IPv4: an echo request is answered by the host
// itself whatever listens, with a reply as large as the request, and
// ICMPv6 echo is what firewalls let through (RFC 4890), where a UDP port
// unreachable may be filtered.
func probe6(dst netip.Addr, size int, timeout time.Duration) (outcome, int, error) {
	fd, raw, err := echoSocket6()
	if err != nil {
		return lost, 0, err
	}
	defer unix.Close(fd)
	for _, o := range []struct {
		name      string
		opt, data int
	}{
		{"IPV6_MTU_DISCOVER", unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE},
		{"IPV6_DONTFRAG", unix.IPV6_DONTFRAG, 1},
		{"IPV6_RECVERR", unix.IPV6_RECVERR, 1},
	} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, o.opt, o.data); err != nil {
			return lost, 0, fmt.Errorf("%s: %w", o.name, err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet6{Addr: dst.As16()}); err != nil {
		// No route to dst: nothing can get there, as a UDP probe over
		// IPv4 would find by its own error.
		return lost, 0, nil
	}
	// On a ping socket the kernel writes its own identifier and matches
	// replies by it; on a raw socket the identifier is ours to check.
	id, seq := uint16(rand.Uint32()), uint16(1)
	msg := make([]byte, size-ipv6HeaderLen)
	msg[0] = icmp6EchoRequest
	binary.BigEndian.PutUint16(msg[4:6], id)
	binary.BigEndian.PutUint16(msg[6:8], seq)
	// The checksum (bytes 2-3) is the kernel's on both kinds of socket.
	if _, err := unix.Write(fd, msg); err != nil {
		if errors.Is(err, unix.EMSGSIZE) {
			return tooBig, 0, nil
		}
		return lost, 0, nil
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 64)
	for {
		revents, ok := waitReadable(fd, unix.POLLIN, deadline)
		if !ok {
			return lost, 0, nil
		}
		if revents&unix.POLLERR != 0 {
			ee, ok := readErrQueue(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR)
			if ok && ee.errno == unix.EMSGSIZE && ee.origin == soEEOriginICMP6 {
				return fragNeeded, int(ee.info), nil
			}
			// Anything else (an address unreachable, say) leaves the
			// probe to time out as lost, as over IPv4.
			continue
		}
		m, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err != nil || m < icmp6HeaderLen || buf[0] != icmp6EchoReply {
			continue
		}
		if raw && (binary.BigEndian.Uint16(buf[4:6]) != id || binary.BigEndian.Uint16(buf[6:8]) != seq) {
			continue // another prober's reply, from the same peer
		}
		return passed, 0, nil
	}
}

// echoSocket6 opens an ICMPv6 socket for one echo: a ping socket where
// net.ipv4.ping_group_range (which governs IPv6 too) admits the agent's
// group, else a raw socket (CAP_NET_RAW, which the bundles grant),
// filtered to echo replies.
func echoSocket6() (fd int, raw bool, err error) {
	fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err == nil {
		return fd, false, nil
	}
	fd, rerr := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if rerr != nil {
		return -1, false, fmt.Errorf("no ICMPv6 socket (ping socket: %v; raw socket: %w)", err, rerr)
	}
	// A raw ICMPv6 socket sees every ICMPv6 message of the namespace
	// from its connected peer; only echo replies are read. Errors about
	// our own packets still reach the error queue (IPV6_RECVERR): the
	// filter is for messages delivered as data.
	var f unix.ICMPv6Filter
	for i := range f.Data {
		f.Data[i] = 0xffffffff // a set bit blocks the type
	}
	f.Data[icmp6EchoReply>>5] &^= 1 << (icmp6EchoReply & 31)
	if err := unix.SetsockoptICMPv6Filter(fd, unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &f); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("ICMP6_FILTER: %w", err)
	}
	return fd, true, nil
}
