//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Counts every packet the kernel drops, keyed by the kernel's own drop
 * reason, the packet's protocol, and the interface and network namespace it
 * was on. Counting is in the kernel; user space reads the map at scrape.
 *
 * Three entry points share one map, tried in this order by the loader:
 * tp_btf/kfree_skb (direct pointer walks, about 3 ns per event for an empty
 * program), raw_tp/kfree_skb, and the classic skb:kfree_skb tracepoint.
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

/* A per-CPU direct-mapped table of counters in front of the hash: a drop
 * whose key owns its slot (on this CPU) is an array access and four
 * compares instead of hashing a 16-byte key and walking a bucket. That was
 * most of the program's cost over an empty one. A slot belongs to the first
 * key that lands in it for good: counts never move between a slot and the
 * hash, so user space sums both and every total only grows, whatever the
 * order it reads them in. Keys that find their slot taken count in the
 * hash, as before. reason 0 (never counted) marks a free slot. */
#define SLOTS 256

/* Off (set by the loader) when the drops map is made smaller than its
 * default: whoever bounds the keys that tightly gets the bound exactly,
 * without up to SLOTS more keys per CPU here. */
volatile const __u32 slots_on = 1;

struct drop_slot {
	struct drop_key key;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct drop_slot);
} slots SEC(".maps");

/* SKB_NOT_DROPPED_YET = 0 and SKB_CONSUMED = 1 are not drops. Since 5.19
 * consume_skb has its own tracepoint, but kernels differ; skip them here. */
#define FIRST_DROP_REASON 2

static __always_inline void count(struct drop_key *k)
{
	/* Reasons differ in the low bits, interfaces too: mix both. */
	__u32 i = (k->reason ^ (k->ifindex * 0x9e3779b1u) ^ k->protocol) & (SLOTS - 1);
	struct drop_slot *s = slots_on ? bpf_map_lookup_elem(&slots, &i) : 0;
	if (s) {
		if (s->key.reason == k->reason && s->key.ifindex == k->ifindex &&
		    s->key.netns == k->netns && s->key.protocol == k->protocol) {
			s->count++;
			return;
		}
		if (s->key.reason == 0) {
			s->key = *k;
			s->count = 1;
			return;
		}
	}
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

/* count_read fills in the interface and namespace with CO-RE reads (the
 * raw_tp and classic forms, whose skb is not a typed pointer) and counts. */
static __always_inline void count_read(struct drop_key *k, struct sk_buff *skb)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (dev) {
		k->ifindex = BPF_CORE_READ(dev, ifindex);
		k->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	} else {
		struct sock *sk = BPF_CORE_READ(skb, sk);
		if (sk)
			k->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	}
	count(k);
}

/* raw_tp/kfree_skb: the same event without BTF-typed arguments (kernels
 * or policies that refuse tp_btf); pointers are read with CO-RE reads.
 * The arguments are the tracepoint's prototype: skb, location, reason
 * (since 5.17; rx_sk was added after reason in 6.11). */
SEC("raw_tp/kfree_skb")
int BPF_PROG(kfree_skb_raw, struct sk_buff *skb, void *location, unsigned int reason)
{
	if (reason < FIRST_DROP_REASON)
		return 0;
	struct drop_key k = {.reason = reason, .protocol = BPF_CORE_READ(skb, protocol)};
	count_read(&k, skb);
	return 0;
}

/* The classic skb:kfree_skb tracepoint, whose record layout changed in
 * 6.11 (rx_sk inserted before protocol): the loader reads the running
 * kernel's format and sets these offsets. */
__u32 tp_off_skbaddr = 8;
__u32 tp_off_protocol;
__u32 tp_off_reason;

SEC("tracepoint/skb/kfree_skb")
int kfree_skb_tp(void *ctx)
{
	__u32 reason = 0;
	__u16 protocol = 0;
	struct sk_buff *skb = 0;
	TP_READ(ctx, tp_off_reason, reason);
	if (reason < FIRST_DROP_REASON)
		return 0;
	TP_READ(ctx, tp_off_protocol, protocol);
	TP_READ(ctx, tp_off_skbaddr, skb);
	struct drop_key k = {.reason = reason, .protocol = bpf_htons(protocol)};
	count_read(&k, skb);
	return 0;
}
