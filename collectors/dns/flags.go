package dns

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	bpfdns "github.com/netsonde/netsonde/bpf/dns"
	"github.com/netsonde/netsonde/collectors"
)

// ParsePorts reads --dns.ports: port numbers, comma-separated or
// repeated; 53 is always watched and need not be given.
func ParsePorts(vals []string) ([]uint16, error) {
	var out []uint16
	seen := map[uint16]bool{53: true}
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			n, err := strconv.ParseUint(f, 10, 16)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("--dns.ports: %q is not a port", f)
			}
			if !seen[uint16(n)] {
				seen[uint16(n)] = true
				out = append(out, uint16(n))
			}
		}
	}
	if len(out) > bpfdns.MaxPorts {
		return nil, fmt.Errorf("--dns.ports: at most %d ports besides 53", bpfdns.MaxPorts)
	}
	return out, nil
}

type config struct {
	timeout     *time.Duration
	ports       *[]string
	maxInflight *uint32
	perPod      *uint32
	hook        *string
	attach      *string
	cgroup      *string
	btfDir      *string
	sweepEvery  *time.Duration
	onlyNetns   *[]uint64
	netnsRead   *string
	forgetAfter *time.Duration
	topNames    *int
}

func setup(app *kingpin.Application) collectors.Factory {
	c := config{
		timeout: app.Flag("dns.timeout", "A query unanswered this long is a timeout (glibc's default is 5s).").
			Default("5s").Duration(),
		ports: app.Flag("dns.ports", "DNS server ports to watch besides 53 (comma-separated or repeated; at most 8).").
			Strings(),
		maxInflight: app.Flag("dns.max-inflight", "Slots of the kernel's in-flight query table, rounded up to a power of two; a query's hash picks two of them, and when both hold queries in time the older is evicted (counted in netsonde_dns_inflight_evictions_total).").
			Default("16384").Uint32(),
		perPod: app.Flag("dns.max-inflight-per-pod", "Slots of the in-flight table one pod (or the node's own sockets) may hold; its queries beyond them are not tracked (counted in netsonde_dns_inflight_refused_total), and a query never displaces one of a pod with fewer in flight than its own. 0: a quarter of --dns.max-inflight.").
			Default("0").Uint32(),
		hook: app.Flag("dns.hook", "Where DNS is watched: tc (programs on every interface of the node: pods' veths and the node's own sockets; non-DNS packets cost a port check), cgroup (cgroup_skb on the cgroup v2 root: every socket, pods without a veth included, at the cost of a program run per packet of every socket) or auto (cgroup on a node whose dataplane delivers to pods past their veths or has none: Cilium, Calico's eBPF mode, netkit; else tc).").
			Default(hookAuto).Enum(hookAuto, bpfdns.HookTC, bpfdns.HookCgroup),
		attach: app.Flag("dns.attach", "With --dns.hook=tc, how the programs go on each interface: tc (a clsact filter; well under a millisecond per interface) or tcx (TCX links ahead of every other program on the interface, 6.6+; each attach and detach waits for an RCU grace period, one interface after another: tens of seconds for 1,000 interfaces).").
			Default(bpfdns.AttachTC).Enum(bpfdns.AttachTC, bpfdns.AttachTCX),
		cgroup: app.Flag("dns.cgroup-path", "With --dns.hook=cgroup: the cgroup v2 directory whose sockets are watched; default: the root of the cgroup2 mount in /proc/self/mountinfo (in a container: mount the host's /sys/fs/cgroup).").
			Default("").String(),
		btfDir: app.Flag("dns.btf-dir", "Where the kernel's BTF is (drop reason names).").
			Default("/sys/kernel/btf").String(),
		sweepEvery: app.Flag("dns.sweep-interval", "How often the in-flight table is swept for timeouts; default: a quarter of --dns.timeout, at most 1s.").
			Default("0").Hidden().Duration(),
		topNames: app.Flag("dns.top-failing-names", "Keep the N query names with the most timeouts and NXDOMAIN answers (netsonde_dns_top_failing_names); 0: off, no name is kept anywhere.").
			Default("0").Int(),
		forgetAfter: app.Flag("dns.forget-after", "Forget the counters of a network namespace (a pod) this long after it disappeared, so its series end and the kernel maps keep room.").
			Default("2m").Duration(),
		netnsRead: app.Flag("dns.netns-read", "How the programs read a socket's network namespace: auto (bpf_rdonly_cast on 6.2+, else bpf_probe_read_kernel), cast or probe_read.").
			Default(bpfdns.NetnsReadAuto).Hidden().Enum(bpfdns.NetnsReadAuto, bpfdns.NetnsReadCast, bpfdns.NetnsReadProbe),
		onlyNetns: app.Flag("dns.only-netns", "For tests: label pods by the cookie of their network namespace (SO_NETNS_COOKIE), namespace=\"netns\", pod=COOKIE, and with --dns.hook=cgroup count only the sockets of these namespaces.").
			Hidden().Uint64List(),
	}
	return func(ctx context.Context, deps collectors.Deps) (collectors.Collector, error) {
		return start(ctx, deps, c)
	}
}
