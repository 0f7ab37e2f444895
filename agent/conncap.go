package agent

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/collectors"
)

// perClientCap closes, as soon as they are accepted, the connections of a
// client address that already has max open. A page is rendered into memory
// and its slot given back before it is sent (see scrapeHandler), so a
// client that never reads holds a connection, a goroutine and its page
// until the write deadline: without a cap per address one client could
// open thousands and hold that much memory, or the node's file
// descriptors. A cap per address, not in total (netutil.LimitListener),
// since a total one lets any client fill it and keep Prometheus and the
// kubelet out. A Prometheus keeps one connection per target.
type perClientCap struct {
	net.Listener
	max     int
	logger  *slog.Logger
	refused *atomic.Uint64

	mu   sync.Mutex
	open map[netip.Addr]int
	// lastLog rate-limits the log line about refusals: a flood must not
	// flood the log too.
	lastLog time.Time
}

func capPerClient(l net.Listener, max int, refused *atomic.Uint64, logger *slog.Logger) net.Listener {
	return &perClientCap{Listener: l, max: max, logger: logger, refused: refused, open: map[netip.Addr]int{}}
}

func (l *perClientCap) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := clientAddr(c)
		l.mu.Lock()
		if l.open[addr] >= l.max {
			n := l.refused.Add(1)
			logNow := time.Since(l.lastLog) > 10*time.Second
			if logNow {
				l.lastLog = time.Now()
			}
			l.mu.Unlock()
			if logNow {
				l.logger.Warn("connection refused: client has --web.max-connections-per-client open", "client", addr, "max", l.max, "refused_total", n)
			}
			// A reset, not a FIN: no TIME_WAIT kept for a refusal.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // best effort: a FIN instead is still a refusal
			}
			c.Close()
			continue
		}
		l.open[addr]++
		l.mu.Unlock()
		return &cappedConn{Conn: c, release: func() { l.release(addr) }}, nil
	}
}

func (l *perClientCap) release(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[addr]--; l.open[addr] <= 0 {
		delete(l.open, addr)
	}
}

// clientAddr is the connection's remote address, IPv4-mapped IPv6 as IPv4;
// the zero address for a connection that is not IP (all of them share).
func clientAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

type cappedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

var refusedDesc = prometheus.NewDesc(collectors.Namespace+"_http_connections_refused_total",
	"Connections closed as soon as accepted because their client address already had --web.max-connections-per-client open.",
	nil, nil)

// refusedCollector exports the listeners' refusals.
type refusedCollector struct{ n *atomic.Uint64 }

func (c refusedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- refusedDesc }
func (c refusedCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(c.n.Load()))
}
