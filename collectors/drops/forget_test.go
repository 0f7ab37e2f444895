package drops

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	bpfdrops "github.com/netsonde/netsonde/bpf/drops"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/dropreason"
	"github.com/netsonde/netsonde/internal/golden"
)

// finalProbe is a fixedProbe whose Forget reports final counts, as the
// kernel's map does when drops land on a key between its read and its
// deletion (a vanished namespace's inode reused by a new one).
type finalProbe struct {
	fixedProbe
	final map[bpfdrops.Key]uint64
}

func (p *finalProbe) Forget(keys []bpfdrops.Key) map[bpfdrops.Key]uint64 {
	p.fixedProbe.Forget(keys)
	for _, k := range keys {
		delete(p.counts.ByKey, k) // deleted in the kernel
	}
	return p.final
}

// Drops counted on a key after the scrape read it and before it was
// forgotten stay in the series, then and after: 3 + 5 read, 3 more came
// in before the deletion, so the series reads 11 from then on.
func TestForgetKeepsDropsCountedSinceTheRead(t *testing.T) {
	const noSocket = 2
	stays := bpfdrops.Key{Reason: noSocket, Netns: golden.OwnNetns, Protocol: 0x0800}
	gone := bpfdrops.Key{Reason: noSocket, Netns: golden.OwnNetns, Ifindex: golden.IfGone, Protocol: 0x0800}
	p := &finalProbe{fixedProbe: fixedProbe{counts: bpfdrops.Counts{ByKey: map[bpfdrops.Key]uint64{stays: 3, gone: 5}}},
		final: map[bpfdrops.Key]uint64{gone: 8}}
	view := golden.Node()
	clock := &golden.Clock{T: golden.Now}
	deps := collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view, Clock: clock}
	c := newCollector(deps, p, dropreason.Names{noSocket: "NO_SOCKET"}, time.Minute)
	series := `netsonde_packet_drops_total{interface="",namespace="",pod="",protocol="ipv4",reason="NO_SOCKET"} `
	for i, want := range []string{"8", "8", "11", "11"} {
		if i == 2 {
			clock.T = clock.T.Add(2 * time.Minute) // past --drops.forget-after
		}
		page := golden.Render(t, c)
		if !strings.Contains(page, series+want+"\n") {
			t.Fatalf("scrape %d: want %s%s in\n%s", i+1, series, want, page)
		}
	}
	if len(p.forgot) != 1 || p.forgot[0] != gone {
		t.Errorf("forgot %v, want only %v", p.forgot, gone)
	}
}
