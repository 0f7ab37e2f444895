package agent

import (
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// With a cap of 2 per client address, the third and fourth connections
// from 127.0.0.1 are closed at once and counted, one from 127.0.0.2 is
// not; once one of the first two closes, 127.0.0.1 may connect again.
func TestConnectionCapPerClient(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Uint64
	l := capPerClient(inner, 2, &refused, slog.New(slog.DiscardHandler))
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	// A refused connection may fail its connect already (the reset
	// came first): only the accepted ones must succeed.
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: time.Second}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			return nil
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	refusedBy := func(want uint64) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); refused.Load() < want && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if n := refused.Load(); n != want {
			t.Errorf("refused %d connections; want %d", n, want)
		}
	}
	next := func(what string) net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: not accepted", what)
			return nil
		}
	}
	dial("127.0.0.1")
	dial("127.0.0.1")
	s1, _ := next("first"), next("second")
	dial("127.0.0.1")
	dial("127.0.0.1")
	refusedBy(2)
	dial("127.0.0.2")
	next("another client's")
	s1.Close() // the server ends one: its place is free
	dial("127.0.0.1")
	next("after one closed")
	refusedBy(2)
	select {
	case <-accepted:
		t.Error("a connection beyond the cap was accepted")
	default:
	}
}
