package doctor

// advice is why each finding matters and the first command to run, by
// finding id: one text for `doctor` on one node and `doctor --prometheus`
// over a cluster. Checks that name an interface or a target in the
// command build it from these.
var advice = map[string]struct{ Why, Next string }{
	"neighbour-table-full": {
		"a neighbour the kernel refuses (\"neighbor table overflow!\") is a connection that fails without an error",
		"ip -s ntable show (entries, thresh3, table_fulls); raise net.ipv4.neigh.default.gc_thresh1/2/3 (net.ipv6 for ipv6)"},
	"qdisc-drops": {
		"the device cannot send as fast as it is given packets, or a shaper's rate is reached: senders see loss and retransmit",
		"tc -s qdisc show dev <interface> (dropped, overlimits, backlog); ip -s link show <interface>; ethtool <interface> | grep Speed"},
	"conntrack-fill": {
		"at 100% the kernel drops every new connection without telling the application",
		"conntrack -S; conntrack -L | awk '{print $1}' | sort | uniq -c; " +
			"then raise net.netfilter.nf_conntrack_max or shorten the timeouts of what fills it"},
	"conntrack-drop": {
		"new connections fail silently: the table is full and nothing could be evicted",
		"conntrack -S (drop=, early_drop=); dmesg | grep conntrack; compare conntrack -C with sysctl net.netfilter.nf_conntrack_max"},
	"conntrack-insert-failed": {
		"two packets of one flow raced (A and AAAA DNS queries on one socket): clients see 5-second DNS timeouts",
		"conntrack -S (insert_failed=, clash_resolve=); options single-request-reopen in resolv.conf, or NodeLocal DNSCache"},
	"conntrack-early-drop": {
		"the table runs at its limit; the next spike drops traffic",
		"conntrack -S (early_drop=); conntrack -L | awk '{print $1}' | sort | uniq -c; raise net.netfilter.nf_conntrack_max"},
	"mtu-mismatch": {
		"packets of full size are dropped or fragmented",
		"ip -d link show; compare with the underlay and grep -r mtu /etc/cni/net.d/"},
	"pmtu-blackhole": {
		"TCP connections hang after the handshake once they send a full-size segment",
		"let ICMP type 3 code 4 through, or clamp MSS"},
	"path-mtu-below-interface": {
		"this works only while ICMP fragmentation-needed gets through every firewall on the path",
		"lower the interface or overlay MTU to the path's, or fix the hop"},
	"packet-drops": {
		"dropped packets are retransmits, timeouts and failed connections for whoever sent them",
		"break them down by interface and pod: sum by (interface, namespace, pod) (rate(netsonde_packet_drops_total[5m]))"},
	"tcp-retransmits": {
		"packets of established connections are being lost: latency and throughput suffer",
		"look at packet drops by reason and interface, check MTUs (ip -d link show, tracepath -n <peer>)"},
	"tcp-connect-retries": {
		"a dead backend, a full conntrack table or a firewall: connects hang for seconds, then fail",
		"conntrack -S; the network policies and firewalls between the pods named above"},
	"tcp-connect-failures": {
		"refused: nothing listens (a backend down, a Service without endpoints); timeout: SYNs dropped by a policy, a firewall or a full conntrack table",
		"kubectl get endpoints for the Services they call; conntrack -S; the NetworkPolicies of the namespace"},
	"mesh-path-failing": {
		"pods on this node cannot reach other nodes' pods (overlay) or the nodes themselves (underlay) while the other path works",
		"ip -d link show (the overlay device and its MTU); tracepath -n <peer>; the firewall between the nodes (VXLAN is UDP 8472 or 4789)"},
	"dns-timeouts": {
		"lookups stall for the resolver's timeout (5 s in glibc) and then fail: requests time out upstream of every call that resolves a name",
		"conntrack -S (insert_failed: the parallel A/AAAA race); the kernel's drops of DNS packets by reason; kubectl -n kube-system logs -l k8s-app=kube-dns"},
	"disk-fsync-slow": {
		"etcd on this disk misses heartbeats: slow applies, leader elections, API timeouts",
		"fio --rw=write --ioengine=sync --fdatasync=1 --size=22m --bs=2300 --name=etcd_check --directory=<etcd disk>; iostat -x 1"},
	"process-fsync-slow": {
		"etcd on this disk misses heartbeats: slow applies, leader elections, API timeouts",
		"fio --rw=write --ioengine=sync --fdatasync=1 --size=22m --bs=2300 --name=etcd_check --directory=<etcd disk>; iostat -x 1"},
	"listen-overflows": {
		"the application does not accept() as fast as connections arrive: the kernel drops them and clients wait for SYN retransmits (1 s, 3 s...)",
		"in the pod's network namespace (nsenter -t PID -n): nstat -az TcpExtListenOverflows; ss -ltn (Recv-Q at Send-Q, the backlog)"},
	"udp-receive-errors": {
		"datagrams are lost after they arrived: a metrics, log or DNS consumer loses data with no error on the wire",
		"in the pod's network namespace: nstat -az UdpRcvbufErrors; ss -uanm (Recv-Q near rb); read faster or raise SO_RCVBUF and net.core.rmem_max"},
	"tcp-memory-pressure": {
		"the kernel shrinks every TCP socket's buffers on the node; at tcp_mem's max it aborts connections",
		"cat /proc/net/sockstat; sysctl net.ipv4.tcp_mem; ss -tanm (sockets with large rb/tb, Recv-Q nobody reads)"},
	"ephemeral-ports-exhausted": {
		"its new connections fail at once with EADDRNOTAVAIL: every port of ip_local_port_range is in use or in TIME_WAIT towards the destination",
		"in the pod's network namespace: sysctl net.ipv4.ip_local_port_range; ss -tan state time-wait | wc -l; reuse connections or widen the range"},
	"collector-down": {
		"its metrics are missing and its alerts cannot fire",
		"the agent's log and landing page say why"},
}
