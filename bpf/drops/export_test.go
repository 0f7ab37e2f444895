package drops

import "github.com/cilium/ebpf"

// QuotaAdded and QuotaForgotten give the external tests the quota maps.
func (p *Probe) QuotaAdded() *ebpf.Map     { return p.maps.QuotaAdded }
func (p *Probe) QuotaForgotten() *ebpf.Map { return p.maps.QuotaForgotten }
