package tcpconnect_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/bpf/tcpconnect"
	"github.com/netsonde/netsonde/internal/testenv"
)

// dial makes n connects from ns to addr at once, each with one SYN retry,
// and returns how many were established.
func dial(t *testing.T, ns *testenv.Netns, addr string, n int) int {
	t.Helper()
	var mu sync.Mutex
	ok := 0
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := ns.Do(func() error {
				c, err := testenv.SYNDialer(20*time.Second, 1).Dial("tcp4", addr)
				if err != nil {
					return err
				}
				return c.Close()
			})
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ok
}

// With no room for any namespace (the map holds only the overflow slot),
// each of 30 refused connects counts its outcome and its received reset
// in the overflow slot, and each of those 60 events as full.
func TestStatsFullCounted(t *testing.T) {
	host, pod := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, host, pod, "cf0", "cf1", "198.18.107.1/24", "198.18.107.2/24", 0)
	c, err := tcpconnect.Load(tcpconnect.Options{MapSizes: map[string]uint32{"stats": 1},
		OnlyNetns: []uint64{pod.Cookie(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 30 {
		if dial(t, pod, "198.18.107.1:81", 1) != 0 {
			t.Fatal("a connect to a closed port was established")
		}
	}
	stats, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	over := stats[tcpconnect.OverflowNetns]
	if len(stats) != 1 || over.Connects != [5]uint64{0, 30, 0, 0, 0} || over.Resets != [2]uint64{0, 30} {
		t.Errorf("stats %+v, want only the overflow slot with 30 refused connects and 30 resets received", stats)
	}
	full, err := c.Full()
	if err != nil {
		t.Fatal(err)
	}
	if full["tcpconnect_stats"] != 60 || full["tcpconnect_inflight"] != 0 {
		t.Errorf("full %v, want tcpconnect_stats 60 and tcpconnect_inflight 0", full)
	}
}

// Five connects whose SYNs are dropped, their in-flight entries taken
// away while they wait (as an eviction from the full LRU table would):
// when they give up, none is counted as a timeout and each is counted as
// full.
func TestInflightLossCounted(t *testing.T) {
	testenv.RequireCommand(t, "nft")
	host, pod := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, host, pod, "cg0", "cg1", "198.18.108.1/24", "198.18.108.2/24", 0)
	testenv.DropSYNs(t, host, 82)
	c, err := tcpconnect.Load(tcpconnect.Options{OnlyNetns: []uint64{pod.Cookie(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan int)
	go func() { done <- dial(t, pod, "198.18.108.1:82", 5) }()
	m := c.InflightMap()
	testenv.Eventually(t, 5*time.Second, "5 connects in flight", func() bool {
		n, err := c.InFlight()
		return err == nil && n[pod.Cookie(t)] == 5
	})
	var keys []uint64
	var k uint64
	var v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, unix.ENOENT) {
			t.Fatal(err)
		}
	}
	if n := <-done; n != 0 {
		t.Fatalf("%d connects through the SYN drop established", n)
	}
	stats, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	if s := stats[pod.Cookie(t)]; s.Connects != [5]uint64{} {
		t.Errorf("connects %v counted, want none: their entries were gone", s.Connects)
	}
	full, err := c.Full()
	if err != nil {
		t.Fatal(err)
	}
	if full["tcpconnect_inflight"] != 5 || full["tcpconnect_stats"] != 0 {
		t.Errorf("full %v, want tcpconnect_inflight 5 and tcpconnect_stats 0", full)
	}
}
