//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Counts TCP retransmits by the socket's state, address family and network
 * namespace, from the tcp:tcp_retransmit_skb and tcp:tcp_retransmit_synack
 * tracepoints (tp_btf, raw_tp or classic: the loader picks the best). The namespace is in the key so that retransmits can be
 * attributed to the pod whose namespace it is; the map layout does not
 * change when that attribution is switched on.
 */
#include "../include/netsonde.h"

struct retrans_key {
	__u64 netns; /* the socket's namespace's cookie */
	__u16 family;
	__u8 state; /* enum tcp_state: 1 ESTABLISHED, 2 SYN_SENT, 3 SYN_RECV, ... */
	__u8 pad;
	__u32 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct retrans_key);
	__type(value, __u64);
} retrans SEC(".maps");

/* Retransmit events that found retrans full (netsonde_bpf_map_full_total). */
NETSONDE_FULL_MAP(1);

NETSONDE_ONLY_NETNS

static __always_inline void count(struct retrans_key *k, __u64 n)
{
	if (ignored(k->netns))
		return;
	if (counter_add(&retrans, k, n))
		count_full(&full, 0);
}

/* Retransmits that exit before the kernel counts them (RetransSegs,
 * TCPSynRetrans count once the segment reaches tcp_transmit_skb, whether
 * or not that then fails): EBUSY (still in a host queue), EAGAIN, ENOMEM,
 * EHOSTUNREACH. Only 6.13+ pass err to the tracepoint; before, it fires on
 * success only. */
static __always_inline int uncounted(int err)
{
	return err == -16 || err == -11 || err == -12 || err == -113;
}

/* Segments, as RetransSegs counts them: TCP always builds GSO skbs, and one
 * retransmitted skb may carry several. TCP_SKB_CB(skb)->tcp_gso_segs is at
 * skb->cb bytes 8..9 (struct tcp_skb_cb: seq, end_seq, tcp_gso_segs). */
static __always_inline __u64 segments(const struct sk_buff *skb)
{
	__u16 segs = 0;
	bpf_probe_read_kernel(&segs, sizeof(segs), (void *)skb + bpf_core_field_offset(struct sk_buff, cb) + 8);
	return segs ? segs : 1;
}

static __always_inline void count_skb(const struct sock *sk, const struct sk_buff *skb)
{
	struct retrans_key k = {
		.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie),
		.family = BPF_CORE_READ(sk, __sk_common.skc_family),
		.state = BPF_CORE_READ(sk, __sk_common.skc_state),
	};
	count(&k, segments(skb));
}

/* A SYN-ACK is resent for a request socket: the connection is in SYN_RECV
 * (3), whatever state the listener is in. */
static __always_inline void count_synack(const struct sock *sk)
{
	struct retrans_key k = {
		.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie),
		.family = BPF_CORE_READ(sk, __sk_common.skc_family),
		.state = 3,
	};
	count(&k, 1);
}

/* tp_btf with the err argument (6.13+); the verifier refuses it on older
 * kernels, where the loader falls back to the two-argument form. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(retransmit_skb_btf_err, const struct sock *sk, const struct sk_buff *skb, int err)
{
	if (uncounted(err))
		return 0;
	count_skb(sk, skb);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(retransmit_skb_btf, const struct sock *sk, const struct sk_buff *skb)
{
	count_skb(sk, skb);
	return 0;
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(retransmit_skb_raw, const struct sock *sk, const struct sk_buff *skb)
{
	count_skb(sk, skb);
	return 0;
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(retransmit_synack_btf, const struct sock *sk, const void *req)
{
	count_synack(sk);
	return 0;
}

SEC("raw_tp/tcp_retransmit_synack")
int BPF_PROG(retransmit_synack_raw, const struct sock *sk, const void *req)
{
	count_synack(sk);
	return 0;
}

/* Classic tracepoints: skbaddr and skaddr lead both records (offsets 8 and
 * 16, stable since 4.16); err's offset comes from the format file (0: the
 * kernel has none). */
__u32 tp_off_err;

SEC("tracepoint/tcp/tcp_retransmit_skb")
int retransmit_skb_tp(void *ctx)
{
	const struct sk_buff *skb = 0;
	const struct sock *sk = 0;
	TP_READ(ctx, 8, skb);
	TP_READ(ctx, 16, sk);
	if (tp_off_err) {
		int err = 0;
		TP_READ(ctx, tp_off_err, err);
		if (uncounted(err))
			return 0;
	}
	count_skb(sk, skb);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_synack")
int retransmit_synack_tp(void *ctx)
{
	const struct sock *sk = 0;
	TP_READ(ctx, 8, sk);
	count_synack(sk);
	return 0;
}
