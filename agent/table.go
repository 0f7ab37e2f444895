package agent

import (
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/collectors/conntrack"
	"github.com/netsonde/netsonde/collectors/drops"
	"github.com/netsonde/netsonde/collectors/fsync"
	"github.com/netsonde/netsonde/collectors/mtu"
	"github.com/netsonde/netsonde/collectors/mtucheck"
)

// Collectors is the table of every collector netsonde has, one line each.
// Order does not matter: collectors start concurrently and are listed by name.
func Collectors() []collectors.Spec {
	return []collectors.Spec{
		conntrack.Spec,
		drops.Spec,
		fsync.ProbeSpec,
		fsync.TraceSpec,
		mtucheck.Spec,
		mtu.Spec,
	}
}
