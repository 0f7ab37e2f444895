package doctor

import (
	"fmt"
	"math"
	"time"
)

// Alert names doctor judges with (deploy/prometheus/rules.yml).
const (
	alertConntrackFilling  = "NetsondeConntrackTableFilling"
	alertConntrackFull     = "NetsondeConntrackTableFull"
	alertConntrackDropping = "NetsondeConntrackDroppingPackets"
	alertConntrackInsert   = "NetsondeConntrackInsertFailed"
	alertConntrackEarly    = "NetsondeConntrackEarlyDrop"
	alertMTUMismatch       = "NetsondeMTUMismatch"
	alertPathMTUBelow      = "NetsondePathMTUBelowInterfaceMTU"
	alertPMTUBlackHole     = "NetsondePMTUBlackHole"
	alertDiskFsync         = "NetsondeDiskFsyncSlow"
	alertProcessFsync      = "NetsondeProcessFsyncSlow"
	alertDrops             = "NetsondePacketDropsHigh"
	alertRetransmits       = "NetsondeTCPRetransmitsHigh"
	alertConnectRetries    = "NetsondeTCPConnectRetries"
	alertCollectorDown     = "NetsondeCollectorDown"
)

// Checks lists every diagnosis doctor runs, in the order their findings
// are listed within one severity.
func Checks() []Check {
	return []Check{
		{Name: "mtu", Alerts: []string{alertMTUMismatch}, Run: checkMTUMismatch},
		{Name: "pmtu", Alerts: []string{alertPMTUBlackHole}, VectorAlerts: []string{alertPathMTUBelow}, Run: checkPathMTU},
		{Name: "conntrack-fill", Alerts: []string{alertConntrackFull, alertConntrackFilling}, Run: checkConntrackFill},
		{Name: "conntrack-events", Alerts: []string{alertConntrackDropping, alertConntrackInsert, alertConntrackEarly}, Run: checkConntrackEvents},
		{Name: "drops", Alerts: []string{alertDrops}, Run: checkDrops},
		{Name: "tcp", Alerts: []string{alertRetransmits, alertConnectRetries}, Run: checkRetransmits},
		{Name: "tcp-connects", Alerts: []string{alertConnectFailures}, Run: checkConnects},
		{Name: "mesh", VectorAlerts: []string{alertMeshPathFailing}, Run: checkMesh},
		{Name: "dns", Alerts: []string{alertDNSTimeouts}, Run: checkDNS},
		{Name: "sockets", Alerts: []string{alertListenOverflows, alertUDPErrors, alertTCPMemory, alertPortsExhausted}, Run: checkSockets},
		{Name: "neighbour", Alerts: []string{alertNeighbourFull}, Run: checkNeighbour},
		{Name: "qdisc", Alerts: []string{alertQdiscDrops}, Run: checkQdisc},
		{Name: "fsync", Alerts: []string{alertDiskFsync, alertProcessFsync}, Run: checkFsync},
		{Name: "collectors", Alerts: []string{alertCollectorDown}, Run: checkCollectors},
	}
}

// perRange converts an increase seen over the run into the alert's own
// unit: an increase over the alert's range (increase(x[5m]) > 10), at the
// rate doctor saw. A 10-second run cannot wait five minutes; it can say
// whether the rate it saw, kept up, would cross the line.
func perRange(o Observation, increase float64, rng time.Duration) float64 {
	return o.Rate(increase) * rng.Seconds()
}

// num prints a count as a count (4000, not 4e+03) and anything else with
// four significant digits.
func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.4g", v)
}
