package fragments_test

import (
	"net"
	"testing"

	"github.com/netsonde/netsonde/bpf/fragments"
	"github.com/netsonde/netsonde/internal/testenv"
)

// With room for one key, the 300 fragments leaving by one interface take
// it, and the 300 leaving by a second interface are counted as full,
// exactly.
func TestMapFullCounted(t *testing.T) {
	a, b, c := testenv.NewNetns(t), testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "fu0", "fu1", "198.18.105.1/24", "198.18.105.2/24", 1500)
	testenv.Veth(t, a, c, "fv0", "fv1", "198.18.106.1/24", "198.18.106.2/24", 1500)
	counter, err := fragments.Load(fragments.Options{OwnNetns: a.Cookie(t), Mode: fragments.ModeTCX,
		MapSizes: map[string]uint32{"frags": 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close()
	var first, second int
	if err := a.Do(func() error {
		for _, name := range []string{"fu0", "fv0"} {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			if err := counter.Interfaces().Attach(ifc.Index, false); err != nil {
				return err
			}
			if name == "fu0" {
				first = ifc.Index
			} else {
				second = ifc.Index
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// ARP first, so that no datagram waits on a neighbour and none is
	// dropped from its queue.
	a.Exec(t, "ping", "-c1", "-W2", "198.18.105.2")
	a.Exec(t, "ping", "-c1", "-W2", "198.18.106.2")
	// 100 datagrams of 4,000 bytes: 300 fragments each way out.
	testenv.SendUDP(t, a, "198.18.105.2:9", 4000, 100, 10)
	testenv.SendUDP(t, a, "198.18.106.2:9", 4000, 100, 10)

	counts, err := counter.Read()
	if err != nil {
		t.Fatal(err)
	}
	want := fragments.Key{Ifindex: uint32(first), Direction: fragments.Egress, Family: 4, What: fragments.WhatFragment}
	if len(counts) != 1 || counts[want] != 300 {
		t.Errorf("counts %v, want only %+v = 300", counts, want)
	}
	full, err := counter.Full()
	if err != nil {
		t.Fatal(err)
	}
	if full != 300 {
		t.Errorf("full %d, want 300: the fragments out of interface %d", full, second)
	}
}
