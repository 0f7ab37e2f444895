package dns

import (
	"fmt"

	"github.com/netsonde/netsonde/internal/decode"
)

// NXDomainByName returns the NXDOMAIN answers counted per name hash
// (--dns.top-failing-names).
func (p *Probe) NXDomainByName() (map[uint64]uint64, error) {
	out := map[uint64]uint64{}
	var k, v uint64
	it := p.maps.NameNxdomain.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate NXDOMAIN names: %w", err)
	}
	return out, nil
}

// Name returns the name kept for a hash, decoded, if the kernel still
// has it.
func (p *Probe) Name(hash uint64) (string, bool) {
	var v bpfNameVal
	if err := p.maps.Names.Lookup(hash, &v); err != nil {
		return "", false
	}
	return decode.DNSName(v.Name[:])
}
