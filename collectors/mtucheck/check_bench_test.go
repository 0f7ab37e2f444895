package mtucheck

import (
	"fmt"
	"net"
	"testing"

	"github.com/netsonde/netsonde/internal/hostview"
)

// BenchmarkCheck is the scrape-time check of a node with 1,000 veths on
// IPv6 (each gets a below_ipv6_minimum verdict) and an eth0 default route.
func BenchmarkCheck(b *testing.B) {
	links := []hostview.Link{{Name: "eth0", Index: 1, Kind: "device", MTU: 1500}}
	for i := range 1000 {
		links = append(links, hostview.Link{Name: fmt.Sprintf("veth%d", i), Index: i + 2, Kind: "veth", MTU: 1500})
	}
	route := func(net.IP) int { return 1 }
	peer := func(hostview.Link) (int, bool) { return 1500, true }
	b.ReportAllocs()
	for b.Loop() {
		if n := len(check(links, route, facts{ipv6: true}, peer)); n != 1000 {
			b.Fatalf("%d verdicts", n)
		}
	}
}
