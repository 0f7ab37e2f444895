package fragments_test

import "golang.org/x/sys/unix"

// setDF makes the socket send with Don't Fragment and ignore the path MTU
// it has learned, so every datagram of the test reaches the router.
func setDF(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
}
