package tcpconnect

import "github.com/cilium/ebpf"

// InflightMap gives the external tests the table of connects in flight.
func (p *Probe) InflightMap() *ebpf.Map { return p.maps.Inflight }
