//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Counts every packet the kernel drops, keyed by the kernel's own drop
 * reason, the packet's protocol, and the interface and network namespace it
 * was on. Counting is in the kernel; user space reads the map at scrape.
 *
 * Two entry points share one map: tp_btf/kfree_skb (direct pointer walks,
 * about 3 ns per event for an empty program) and the classic skb:kfree_skb
 * tracepoint as the fallback for kernels or policies without BTF tracing.
 */
#include "../include/netsonde.h"

struct drop_key {
	__u32 reason;   /* enum skb_drop_reason, subsystem in the high 16 bits */
	__u32 ifindex;  /* skb->dev->ifindex, 0 without a device */
	__u32 netns;    /* inode of the device's (or socket's) netns, 0 if none */
	__u16 protocol; /* skb->protocol, network byte order as in the skb */
	__u16 pad;
};

/* Sized for a node: reasons in use (tens) x interfaces with drops
 * (hundreds) x protocols (a few). Walking a map costs its declared size, so
 * it is not larger. When it is full, drops still count in overflow, by
 * reason. */
#define MAX_KEYS 8192
#define MAX_OVERFLOW_REASONS 1024

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_KEYS);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_OVERFLOW_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} overflow SEC(".maps");

/* Drops whose reason did not even fit in overflow (never seen in practice:
 * the kernel has a few hundred reasons). Index 0 only. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* SKB_NOT_DROPPED_YET = 0 and SKB_CONSUMED = 1 are not drops. Since 5.19
 * consume_skb has its own tracepoint, but kernels differ; skip them here. */
#define FIRST_DROP_REASON 2

static __always_inline void count(struct drop_key *k)
{
	if (!counter_add(&drops, k, 1))
		return;
	/* The keyed map is full: count by reason alone, then at all. */
	if (!counter_add(&overflow, &k->reason, 1))
		return;
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&lost, &zero);
	if (v)
		*v += 1;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb_btf, struct sk_buff *skb, void *location, unsigned int reason)
{
	if (reason < FIRST_DROP_REASON)
		return 0;
	struct drop_key k = {.reason = reason, .protocol = skb->protocol};
	struct net_device *dev = skb->dev;
	struct sock *sk = skb->sk;
	struct net *net = 0;
	if (dev) {
		k.ifindex = dev->ifindex;
		net = dev->nd_net.net;
	} else if (sk) {
		net = sk->__sk_common.skc_net.net;
	}
	if (net)
		k.netns = net->ns.inum;
	count(&k);
	return 0;
}

/* The classic tracepoint's context, from
 * /sys/kernel/tracing/events/skb/kfree_skb/format. Fields are read through
 * CO-RE-free offsets: this layout is the tracepoint's stable ABI (rx_sk was
 * added in 6.10 after location; older kernels differ, and the Go loader
 * checks the format file before choosing this program). */
struct kfree_skb_ctx {
	__u64 common;
	void *skbaddr;
	void *location;
	void *rx_sk;
	__u16 protocol;
	__u16 pad;
	__u32 reason;
};

SEC("tracepoint/skb/kfree_skb")
int kfree_skb_tp(struct kfree_skb_ctx *ctx)
{
	if (ctx->reason < FIRST_DROP_REASON)
		return 0;
	struct sk_buff *skb = ctx->skbaddr;
	struct drop_key k = {.reason = ctx->reason, .protocol = bpf_htons(ctx->protocol)};
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (dev) {
		k.ifindex = BPF_CORE_READ(dev, ifindex);
		k.netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	} else {
		struct sock *sk = BPF_CORE_READ(skb, sk);
		if (sk)
			k.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	}
	count(&k);
	return 0;
}
