package fragments

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/internal/testenv"
)

// The start-up handover's worst case, repeated: gated tc and gated TCX
// programs both on an interface while the gate flips between them as fast
// as user space can, during 1,000 datagrams of 4,000 bytes. Each of the
// 3,000 fragments must be counted exactly once, whichever way the gate
// pointed when each program ran.
func TestGateFlipsCountOnce(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "gf0", "gf1", "198.18.109.1/24", "198.18.109.2/24", 1500)
	c, err := Load(Options{OwnNetns: a.Cookie(t), Mode: ModeAuto})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ifindex int
	if err := a.Do(func() error {
		ifc, err := net.InterfaceByName("gf0")
		if err != nil {
			return err
		}
		ifindex = ifc.Index
		legacy, err := loader.NewTC("fragments")
		if err != nil {
			return err
		}
		tc, err := legacy.Attach(ifindex, c.pair(false, tcGated))
		if err != nil {
			return err
		}
		t.Cleanup(func() { tc.Close() })
		tcx, err := loader.AttachTCX(ifindex, c.pair(false, tcxGated))
		if err != nil {
			return err
		}
		t.Cleanup(func() { tcx.Close() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a.Exec(t, "ping", "-c1", "-W2", "198.18.109.2")
	before := count(t, c, ifindex)

	var stop atomic.Bool
	flips := make(chan int)
	go func() {
		n, key := 0, uint32(ifindex)
		for !stop.Load() {
			v := uint8(loader.GateTCX)
			if n%2 == 1 {
				v = loader.GateTC
			}
			if err := c.maps.Gate.Put(key, v); err != nil {
				t.Error(err)
				break
			}
			n++
		}
		flips <- n
	}()
	testenv.SendUDP(t, a, "198.18.109.2:9", 4000, 1000, 10)
	stop.Store(true)
	n := <-flips
	if got := count(t, c, ifindex) - before; got != 3000 {
		t.Errorf("%d fragments counted across %d gate flips, want 3000", got, n)
	}
	t.Logf("%d gate flips while sending", n)
}

// count is the egress fragments counted on an interface.
func count(t *testing.T, c *Probe, ifindex int) uint64 {
	t.Helper()
	counts, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	return counts[Key{Ifindex: uint32(ifindex), Direction: Egress, Family: 4, What: WhatFragment}]
}
