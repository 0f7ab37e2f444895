package drops_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/netsonde/netsonde/bpf/drops"
	"github.com/netsonde/netsonde/internal/testenv"
)

// entries counts a map's keys.
func entries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	var k [8]byte
	var v uint64
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// With room for two keys per namespace, a third interface's drops are
// refused, counted exactly; forgetting one key gives its room back, so the
// third interface's next drops are keyed; forgetting the rest leaves the
// quota maps empty: nothing kept for holders that hold nothing.
func TestQuotaForgetGivesRoomBack(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	const each = 5
	ns := testenv.NewNetns(t)
	ns.Exec(t, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	ns.Exec(t, "nft", "add table inet t; add chain inet t post { type filter hook postrouting priority 0; }; add rule inet t post udp dport 9999 drop")
	ifindex := map[int]uint32{}
	for i := range 3 {
		ns.Exec(t, "ip", "link", "add", fmt.Sprintf("d%d", i), "type", "veth", "peer", "name", fmt.Sprintf("p%d", i))
		ns.Exec(t, "ip", "link", "set", fmt.Sprintf("d%d", i), "up")
		ns.Exec(t, "ip", "addr", "add", fmt.Sprintf("198.19.%d.1/30", i), "dev", fmt.Sprintf("d%d", i))
		if err := ns.Do(func() error {
			ifc, err := net.InterfaceByName(fmt.Sprintf("d%d", i))
			if err == nil {
				ifindex[i] = uint32(ifc.Index)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := drops.Load(drops.Options{MapSize: 64, MaxKeysPerInterface: 4, MaxKeysPerNetns: 2,
		OnlyNetns: []uint64{ns.Cookie(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	drop := func(i int) { // NETFILTER_DROP at POSTROUTING, on d<i>
		t.Helper()
		testenv.SendDropped(t, ns, fmt.Sprintf("198.19.%d.2:9999", i), each)
	}
	read := func() (byIf map[uint32]uint64, keys map[uint32]drops.Key, refused uint64) {
		t.Helper()
		c, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		byIf, keys = map[uint32]uint64{}, map[uint32]drops.Key{}
		for k, v := range c.ByKey {
			byIf[k.Ifindex] += v
			keys[k.Ifindex] = k
		}
		for _, v := range c.Refused {
			refused += v
		}
		if len(c.Overflow) != 0 || c.Lost != 0 {
			t.Errorf("overflow %v, lost %d: the map had room", c.Overflow, c.Lost)
		}
		return byIf, keys, refused
	}
	drop(0)
	drop(1)
	drop(2)
	byIf, keys, refused := read()
	if byIf[ifindex[0]] != each || byIf[ifindex[1]] != each || byIf[ifindex[2]] != 0 || refused != each {
		t.Fatalf("keyed %v, refused %d; want %d on d0 and d1 (%d, %d), %d refused on d2 (%d)",
			byIf, refused, each, ifindex[0], ifindex[1], each, ifindex[2])
	}
	if final := p.Forget([]drops.Key{keys[ifindex[0]]}); final[keys[ifindex[0]]] != each {
		t.Errorf("d0's final count %v, want %d", final, each)
	}
	drop(2)
	byIf, keys, refused = read()
	if byIf[ifindex[2]] != each || refused != each {
		t.Fatalf("after d0 was forgotten: %d on d2, refused %d; want %d and still %d", byIf[ifindex[2]], refused, each, each)
	}
	p.Forget([]drops.Key{keys[ifindex[1]], keys[ifindex[2]]})
	added, forgotten := entries(t, p.QuotaAdded()), entries(t, p.QuotaForgotten())
	if added != 0 || forgotten != 0 {
		t.Errorf("with every key forgotten the quota maps hold %d and %d entries, want none", added, forgotten)
	}
	t.Logf("d0, d1 keyed (%d each), d2 refused %d; d0 forgotten, d2 keyed %d; all forgotten: quota maps %d and %d entries",
		each, refused, byIf[ifindex[2]], added, forgotten)
}
