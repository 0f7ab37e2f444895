package mesh

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// pinger sends ICMP echo requests of one family and reads the replies.
// It prefers the unprivileged ICMP ("ping") socket, which the kernel
// allows to groups in net.ipv4.ping_group_range and which sees only the
// replies to its own requests (the kernel matches the identifier); a raw
// socket, which needs CAP_NET_RAW and sees every ICMP message of the
// namespace, is the fallback.
type pinger struct {
	conn *icmp.PacketConn
	v6   bool
	raw  bool
	id   int // raw sockets only: the identifier replies must carry
}

func openPinger(v6 bool) (*pinger, error) {
	dgram, raw := "udp4", "ip4:icmp"
	if v6 {
		dgram, raw = "udp6", "ip6:ipv6-icmp"
	}
	c, err := icmp.ListenPacket(dgram, "")
	if err == nil {
		return &pinger{conn: c, v6: v6}, nil
	}
	c, rerr := icmp.ListenPacket(raw, "")
	if rerr != nil {
		return nil, fmt.Errorf("ICMP socket (%s: %v; %s: %w)", dgram, err, raw, rerr)
	}
	return &pinger{conn: c, v6: v6, raw: true, id: (os.Getpid() ^ rand.IntN(1<<16)) & 0xffff}, nil
}

func (p *pinger) close() error { return p.conn.Close() }

// send sends one echo request with seq to dst.
func (p *pinger) send(dst netip.Addr, seq int) error {
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if p.v6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	m := icmp.Message{Type: typ, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("netsonde mesh probe")}}
	b, err := m.Marshal(nil)
	if err != nil {
		return err
	}
	var to net.Addr = &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	if !p.raw {
		to = &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	}
	_, err = p.conn.WriteTo(b, to)
	return err
}

// reply is an echo reply read off the socket.
type reply struct {
	from netip.Addr
	seq  int
	at   time.Time
}

// recv reads until an echo reply of ours arrives or the socket's read
// deadline passes (os.ErrDeadlineExceeded).
func (p *pinger) recv(buf []byte) (reply, error) {
	proto, want := 1, icmp.Type(ipv4.ICMPTypeEchoReply)
	if p.v6 {
		proto, want = 58, ipv6.ICMPTypeEchoReply
	}
	for {
		n, from, err := p.conn.ReadFrom(buf)
		at := time.Now()
		if err != nil {
			return reply{}, err
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != want {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || (p.raw && e.ID != p.id) {
			continue
		}
		var ip net.IP
		switch a := from.(type) {
		case *net.UDPAddr:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		return reply{from: addr.Unmap(), seq: e.Seq, at: at}, nil
	}
}

// isTimeout says whether err is a read deadline passing.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
