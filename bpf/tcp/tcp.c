//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Counts TCP retransmits by the socket's state, address family and network
 * namespace, from the tcp:tcp_retransmit_skb and tcp:tcp_retransmit_synack
 * tracepoints. The namespace is in the key so that retransmits can be
 * attributed to the pod whose namespace it is; the map layout does not
 * change when that attribution is switched on.
 */
#include "../include/netsonde.h"

struct retrans_key {
	__u32 netns;
	__u16 family;
	__u8 state; /* enum tcp_state: 1 ESTABLISHED, 2 SYN_SENT, 3 SYN_RECV, ... */
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct retrans_key);
	__type(value, __u64);
} retrans SEC(".maps");

static __always_inline void count(struct retrans_key *k, __u64 n)
{
	counter_add(&retrans, k, n);
}

/* Set by the loader when the tracepoint has the err field (6.13+), which
 * fires for failed attempts too; older kernels fire on success only. */
volatile const __u8 has_err;

static __always_inline __u32 netns_of(const struct sock *sk)
{
	if (!sk)
		return 0;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* Contexts from /sys/kernel/tracing/events/tcp/<name>/format (stable since
 * 4.16 for the fields read here). */
struct retransmit_skb_ctx {
	__u64 common;
	const struct sk_buff *skbaddr;
	const struct sock *skaddr;
	int state;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
	int err;
};

SEC("tracepoint/tcp/tcp_retransmit_skb")
int retransmit_skb(struct retransmit_skb_ctx *ctx)
{
	/* The kernel counts a retransmit (RetransSegs, TCPSynRetrans) once it
	 * gets as far as handing it to tcp_transmit_skb, whether or not that
	 * then fails; these errors are the early exits before that point. */
	if (has_err) {
		int e = ctx->err;
		if (e == -16 /* EBUSY: still in a host queue */ || e == -11 /* EAGAIN */ ||
		    e == -12 /* ENOMEM */ || e == -113 /* EHOSTUNREACH */)
			return 0;
	}
	/* Count segments, as RetransSegs does: TCP always builds GSO skbs, and
	 * one retransmitted skb may carry several. The count is
	 * TCP_SKB_CB(skb)->tcp_gso_segs: skb->cb bytes 8..9 (struct
	 * tcp_skb_cb: seq, end_seq, then tcp_gso_segs). */
	__u16 segs = 0;
	bpf_probe_read_kernel(&segs, sizeof(segs), (void *)ctx->skbaddr + bpf_core_field_offset(struct sk_buff, cb) + 8);
	struct retrans_key k = {.netns = netns_of(ctx->skaddr), .family = ctx->family, .state = ctx->state};
	count(&k, segs ? segs : 1);
	return 0;
}

struct retransmit_synack_ctx {
	__u64 common;
	const struct sock *skaddr;
	const void *req;
	__u16 sport;
	__u16 dport;
	__u16 family;
};

SEC("tracepoint/tcp/tcp_retransmit_synack")
int retransmit_synack(struct retransmit_synack_ctx *ctx)
{
	/* A SYN-ACK is resent for a request socket: the connection is in
	 * SYN_RECV (3), whatever state the listener is in. */
	struct retrans_key k = {.netns = netns_of(ctx->skaddr), .family = ctx->family, .state = 3};
	count(&k, 1);
	return 0;
}
