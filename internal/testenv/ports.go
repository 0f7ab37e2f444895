package testenv

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// ExhaustPorts runs a client out of ephemeral ports: in ns, with ten local
// ports (ip_local_port_range 40000-40009, a setting of ns alone), it
// connects to dst:port 20 times. The first ten must connect (held until
// the test ends), the next ten fail with EADDRNOTAVAIL, the connects the
// kernel refuses before sending a SYN. Anything else fails the test.
func ExhaustPorts(t testing.TB, ns *Netns, dst [4]byte, port int) {
	t.Helper()
	var held []int
	t.Cleanup(func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	})
	refused := 0
	if err := ns.Do(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("40000 40009"), 0o644); err != nil {
			return err
		}
		for i := range 20 {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst, Port: port})
			switch {
			case i < 10 && err == nil:
				held = append(held, fd)
			case i >= 10 && errors.Is(err, unix.EADDRNOTAVAIL):
				refused++
				unix.Close(fd)
			default:
				unix.Close(fd)
				return fmt.Errorf("connect %d of 20: %v (want 10 connected, then EADDRNOTAVAIL)", i+1, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if refused != 10 {
		t.Fatalf("%d connects failed with EADDRNOTAVAIL, want 10", refused)
	}
}
