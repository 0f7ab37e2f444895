//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Counts IP fragments and ICMP "fragmentation needed" / "packet too big"
 * messages per interface and direction, from small TCX programs (TCX, not
 * XDP: an XDP program on a veth has been seen to cut its TCP throughput from
 * 45 to 8 Gbit/s), and the ICMP frag-needed messages this host sends, from
 * the icmp:icmp_send tracepoint.
 */
#include "../include/netsonde.h"

#define TCX_NEXT -1

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

enum what { FRAGMENT = 0, FRAG_NEEDED = 1 };
enum dir { INGRESS = 0, EGRESS = 1 };

struct frag_key {
	__u32 ifindex;
	__u8 direction; /* enum dir */
	__u8 family;    /* 4 or 6 */
	__u8 what;      /* enum what */
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct frag_key);
	__type(value, __u64);
} frags SEC(".maps");

/* The agent's own network namespace: icmp_send fires in every namespace,
 * and only the agent's interfaces are named here. */
volatile const __u64 own_netns; /* its cookie */

/* Packets that found frags full (netsonde_bpf_map_full_total). */
NETSONDE_FULL_MAP(1);

static __always_inline void count(__u32 ifindex, __u8 dir, __u8 family, __u8 what)
{
	struct frag_key k = {.ifindex = ifindex, .direction = dir, .family = family, .what = what};
	if (counter_add(&frags, &k, 1))
		count_full(&full, 0);
}

struct iphdr_min {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
} __attribute__((packed));

struct ipv6hdr_min {
	__u8 ver_tc;
	__u8 tc_flow[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
} __attribute__((packed));

static __always_inline void inspect(struct __sk_buff *skb, __u32 l3, __u8 dir)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u16 proto = bpf_ntohs(skb->protocol);

	if (proto == ETH_P_IP) {
		struct iphdr_min *ip = data + l3;
		if ((void *)(ip + 1) > end)
			return;
		__u16 off = bpf_ntohs(ip->frag_off);
		if (off & (IP_MF | IP_OFFSET)) {
			count(skb->ifindex, dir, 4, FRAGMENT);
			return;
		}
		/* ICMP "fragmentation needed" (type 3 code 4) received: what a
		 * sender's path-MTU discovery depends on. Sent ones are counted
		 * at icmp_send, where the kernel makes them. */
		if (dir == INGRESS && ip->protocol == IPPROTO_ICMP) {
			__u8 *icmp = data + l3 + (ip->ver_ihl & 0x0F) * 4;
			if ((void *)(icmp + 2) > end)
				return;
			if (icmp[0] == 3 && icmp[1] == 4)
				count(skb->ifindex, dir, 4, FRAG_NEEDED);
		}
		return;
	}
	if (proto != ETH_P_IPV6)
		return;
	struct ipv6hdr_min *ip6 = data + l3;
	if ((void *)(ip6 + 1) > end)
		return;
	__u8 next = ip6->nexthdr;
	__u32 off = l3 + sizeof(*ip6);
	/* Walk at most four extension headers: enough for any real packet,
	 * and a bound the verifier can see. */
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (next == NEXTHDR_FRAGMENT) {
			count(skb->ifindex, dir, 6, FRAGMENT);
			return;
		}
		if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING && next != NEXTHDR_DEST)
			break;
		__u8 *h = data + off;
		if ((void *)(h + 2) > end)
			return;
		next = h[0];
		off += (h[1] + 1) * 8;
	}
	/* ICMPv6 Packet Too Big (type 2), both ways: there is no tracepoint
	 * for the ones this host sends, so egress counts them. */
	if (next == IPPROTO_ICMPV6) {
		__u8 *icmp6 = data + off;
		if ((void *)(icmp6 + 1) > end)
			return;
		if (icmp6[0] == 2)
			count(skb->ifindex, dir, 6, FRAG_NEEDED);
	}
}

/* Which attachment counts on an interface while the agent hands it over
 * from a start-up tc filter to TCX (see the Go loader): the gated programs
 * count only when the interface's entry names their own kind (no entry:
 * tc). The plain programs, attached for good, always count and never read
 * this map: the gate costs nothing in the steady state. */
#define GATE_TC 1
#define GATE_TCX 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} gate SEC(".maps");

static __always_inline int open_for(struct __sk_buff *skb, __u8 kind)
{
	__u32 ifindex = skb->ifindex;
	__u8 *g = bpf_map_lookup_elem(&gate, &ifindex);
	if (!g)
		return kind == GATE_TC;
	return *g == kind;
}

/* The gate is read once per packet and hook. On both hooks TCX runs
 * before tc; a flip of the gate between the two runs would otherwise
 * leave the packet counted by neither (TCX read "tc", tc then read "tcx").
 * So the gated TCX program leaves its decision in the packet's control
 * block, with the hook it was made at, and the gated tc program after it
 * follows that decision; with no decision there (no gated TCX program on
 * this hook yet), tc reads the gate itself. */
#define GATE_MAGIC 0x6e736467 /* "nsdg" */

static __always_inline __u32 gate_hook(struct __sk_buff *skb, __u8 dir)
{
	return skb->ifindex << 1 | dir;
}

static __always_inline int tcx_gated(struct __sk_buff *skb, __u8 dir)
{
	int open = open_for(skb, GATE_TCX);
	skb->cb[0] = GATE_MAGIC;
	skb->cb[1] = gate_hook(skb, dir);
	skb->cb[2] = open;
	return open;
}

static __always_inline int tc_gated(struct __sk_buff *skb, __u8 dir)
{
	if (skb->cb[0] == GATE_MAGIC && skb->cb[1] == gate_hook(skb, dir)) {
		skb->cb[0] = 0; /* consumed: never read at another hook */
		return !skb->cb[2];
	}
	return open_for(skb, GATE_TC);
}

/* Ethernet devices (veth, physical, bridge ports, vxlan) and L3 devices
 * (tun, wireguard, ipip) put the network header at different offsets; the
 * loader picks the program by the device's link type. Plain "tc" programs:
 * the same program attaches by TCX (6.6+) or as a direct-action cls_bpf
 * filter, where TCX_NEXT is TC_ACT_UNSPEC, "continue" in both. */
#define FRAG_PROGS(suffix, l3)                                       \
	SEC("tc")                                                    \
	int frag_ingress_##suffix(struct __sk_buff *skb)             \
	{                                                            \
		inspect(skb, l3, INGRESS);                           \
		return TCX_NEXT;                                     \
	}                                                            \
	SEC("tc")                                                    \
	int frag_egress_##suffix(struct __sk_buff *skb)              \
	{                                                            \
		inspect(skb, l3, EGRESS);                            \
		return TCX_NEXT;                                     \
	}                                                            \
	SEC("tc")                                                    \
	int frag_ingress_##suffix##_tc_gated(struct __sk_buff *skb)  \
	{                                                            \
		if (tc_gated(skb, INGRESS))                          \
			inspect(skb, l3, INGRESS);                   \
		return TCX_NEXT;                                     \
	}                                                            \
	SEC("tc")                                                    \
	int frag_egress_##suffix##_tc_gated(struct __sk_buff *skb)   \
	{                                                            \
		if (tc_gated(skb, EGRESS))                           \
			inspect(skb, l3, EGRESS);                    \
		return TCX_NEXT;                                     \
	}                                                            \
	SEC("tc")                                                    \
	int frag_ingress_##suffix##_tcx_gated(struct __sk_buff *skb) \
	{                                                            \
		if (tcx_gated(skb, INGRESS))                         \
			inspect(skb, l3, INGRESS);                   \
		return TCX_NEXT;                                     \
	}                                                            \
	SEC("tc")                                                    \
	int frag_egress_##suffix##_tcx_gated(struct __sk_buff *skb)  \
	{                                                            \
		if (tcx_gated(skb, EGRESS))                          \
			inspect(skb, l3, EGRESS);                    \
		return TCX_NEXT;                                     \
	}

FRAG_PROGS(eth, ETH_HLEN)
FRAG_PROGS(l3, 0)

static __always_inline void icmp_sent(const struct sk_buff *skb, int type, int code)
{
	if (type != 3 || code != 4)
		return;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (!dev)
		return;
	if (BPF_CORE_READ(dev, nd_net.net, net_cookie) != own_netns)
		return;
	/* The interface is the one the too-big packet came in by. */
	count(BPF_CORE_READ(dev, ifindex), EGRESS, 4, FRAG_NEEDED);
}

/* icmp:icmp_send exists since 6.9; before, fentry on __icmp_send (where
 * the kernel allows fentry) is the way in. */
SEC("tp_btf/icmp_send")
int BPF_PROG(icmp_send_btf, const struct sk_buff *skb, int type, int code)
{
	icmp_sent(skb, type, code);
	return 0;
}

SEC("raw_tp/icmp_send")
int BPF_PROG(icmp_send_raw, const struct sk_buff *skb, int type, int code)
{
	icmp_sent(skb, type, code);
	return 0;
}

SEC("fentry/__icmp_send")
int BPF_PROG(icmp_send_fentry, const struct sk_buff *skb, int type, int code)
{
	icmp_sent(skb, type, code);
	return 0;
}

/* The classic tracepoint: skbaddr at 8, type and code where the format
 * file says (set by the loader). */
__u32 tp_off_type;
__u32 tp_off_code;

SEC("tracepoint/icmp/icmp_send")
int icmp_send_tp(void *ctx)
{
	const struct sk_buff *skb = 0;
	int type = 0, code = 0;
	TP_READ(ctx, 8, skb);
	TP_READ(ctx, tp_off_type, type);
	TP_READ(ctx, tp_off_code, code);
	icmp_sent(skb, type, code);
	return 0;
}
