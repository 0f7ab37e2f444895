package ethtool

import (
	"regexp"
)

// dropCounters are the driver statistics (`ethtool -S`) that are drops or
// their direct causes, by their drivers' own names. Every other counter,
// of which a NIC has hundreds, is never read into a series.
var dropCounters = map[string]bool{
	// Intel (e1000e, igb, ixgbe, i40e, ice): the NIC had no descriptor
	// for a packet; it was lost before the kernel saw it.
	"rx_missed_errors":   true,
	"rx_no_buffer_count": true,
	// Amazon ENA: the instance's allowances (bandwidth in and out,
	// packets per second, connection tracking, link-local services such
	// as DNS and the metadata service) exceeded: the hypervisor dropped.
	"bw_in_allowance_exceeded":     true,
	"bw_out_allowance_exceeded":    true,
	"pps_allowance_exceeded":       true,
	"conntrack_allowance_exceeded": true,
	"linklocal_allowance_exceeded": true,
	// Mellanox mlx5: no receive buffer posted; the port discarded.
	"rx_out_of_buffer": true,
	"rx_discards_phy":  true,
	"tx_discards_phy":  true,
}

// perQueue are per-queue drop counters, summed over the queues into one
// series named with the queue number as N: veth and virtio_net
// rx_queue_0_drops, rx_queue_0_xdp_drops (→ rx_queue_N_xdp_drops); mlx5
// rx0_xdp_drop, tx0_dropped (→ rxN_xdp_drop).
var perQueue = []*regexp.Regexp{
	regexp.MustCompile(`^((?:rx|tx)_queue_)\d+(_(?:[a-z_]+_)?drops)$`),
	regexp.MustCompile(`^((?:rx|tx))\d+(_(?:xdp_drop|dropped))$`),
}

// counterName is the series' counter label for a driver statistic, and
// whether it is one netsonde exports.
func counterName(stat string) (string, bool) {
	if dropCounters[stat] {
		return stat, true
	}
	for _, re := range perQueue {
		if m := re.FindStringSubmatch(stat); m != nil {
			return m[1] + "N" + m[2], true
		}
	}
	return "", false
}
