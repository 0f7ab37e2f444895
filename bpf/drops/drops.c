//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Counts every packet the kernel drops, keyed by the kernel's own drop
 * reason, the packet's protocol (one of a fixed few, or "other"), and the
 * interface and network namespace it was on. Counting is in the kernel;
 * user space reads the map at scrape.
 *
 * Three entry points share one map, tried in this order by the loader:
 * tp_btf/kfree_skb (direct pointer walks, about 3 ns per event for an empty
 * program), raw_tp/kfree_skb, and the classic skb:kfree_skb tracepoint.
 */
#include "../include/netsonde.h"

struct drop_key {
	__u32 reason;   /* enum skb_drop_reason, subsystem in the high 16 bits */
	__u32 ifindex;  /* skb->dev->ifindex, 0 without a device */
	__u64 netns;    /* cookie of the device's (or socket's) netns, 0 if none */
	__u16 protocol; /* host byte order; a known EtherType, or PROTO_OTHER */
	__u16 pad;
	__u32 pad2;
};

/* The EtherTypes a drop is keyed by. Any other (a pod with CAP_NET_RAW
 * chooses its frames' EtherType freely) is folded into PROTO_OTHER here in
 * the kernel, so that it takes one key and one series, not one each:
 * no label value comes from what a pod puts in a packet. */
#define PROTO_OTHER 0xffff

static __always_inline __u16 proto_key(__be16 raw)
{
	__u16 p = bpf_ntohs(raw);
	switch (p) {
	case 0:      /* none set */
	case 0x0800: /* IPv4 */
	case 0x86dd: /* IPv6 */
	case 0x0806: /* ARP */
	case 0x8100: /* 802.1Q */
	case 0x88a8: /* 802.1AD */
	case 0x8847: /* MPLS unicast */
	case 0x8848: /* MPLS multicast */
	case 0x8863: /* PPPoE discovery */
	case 0x8864: /* PPPoE session */
	case 0x88cc: /* LLDP */
		return p;
	}
	return PROTO_OTHER;
}

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

/* Drops, by reason, of a new key that its interface's or namespace's
 * quota refused (below): counted like overflow, without the other labels,
 * but apart from it, since the map was not full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_OVERFLOW_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} refused SEC(".maps");

/* Quotas: how many keys of the drops map one interface (netns, ifindex)
 * and one namespace (netns, QUOTA_NETNS) may hold, so that one pod making
 * keys cannot take the map from the others. 0: no quota. The loader sets
 * them; the agent's own namespace (own_netns, the node's) is exempt from
 * the namespace quota, as it holds every host interface. */
volatile const __u32 max_keys_per_iface = 0;
volatile const __u32 max_keys_per_netns = 0;
volatile const __u64 own_netns = 0;

#define QUOTA_NETNS 0xffffffffu

struct quota_key {
	__u64 netns;
	__u32 ifindex; /* QUOTA_NETNS: the namespace as a whole */
	__u32 pad;
};

/* A key's holder is charged in quota_added (here, atomically) and credited
 * in quota_forgotten (by user space alone, when it deletes keys it forgets):
 * each map has one writer side, so neither loses the other's update. What
 * a holder holds is the difference. Sized so that every holder of a live
 * key fits: one interface and one namespace entry per key at most. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * MAX_KEYS);
	__type(key, struct quota_key);
	__type(value, __u64);
} quota_added SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * MAX_KEYS);
	__type(key, struct quota_key);
	__type(value, __u64);
} quota_forgotten SEC(".maps");

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
 * hash, as before. reason 0 (never counted) marks a free slot. Slots are
 * not charged to the quotas: they are SLOTS per CPU whoever takes them, and
 * a key that finds its slot taken pays in the hash like any other. */
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

/* Tests count only the namespaces they made (loader.Options.OnlyNetns). */
NETSONDE_ONLY_NETNS

/* SKB_NOT_DROPPED_YET = 0 and SKB_CONSUMED = 1 are not drops. Since 5.19
 * consume_skb has its own tracepoint, but kernels differ; skip them here. */
#define FIRST_DROP_REASON 2

/* take charges q one key if it holds fewer than limit: 1 if charged, 0 if
 * refused, -1 if q has no entry and none can be made (counted as the map
 * being full). Charged first and checked after, so that CPUs inserting at
 * once can never take more than limit between them. */
static __always_inline int take(struct quota_key *q, __u32 limit)
{
	__u64 *added = bpf_map_lookup_elem(&quota_added, q);
	if (!added) {
		__u64 zero = 0;
		long err = bpf_map_update_elem(&quota_added, q, &zero, BPF_NOEXIST);
		if (err && err != -NETSONDE_EEXIST)
			return -1;
		added = bpf_map_lookup_elem(&quota_added, q);
		if (!added)
			return -1;
	}
	__u64 *gone = bpf_map_lookup_elem(&quota_forgotten, q);
	__u64 before = __sync_fetch_and_add(added, 1);
	if ((__s64)(before - (gone ? *gone : 0)) < (__s64)limit)
		return 1;
	__sync_fetch_and_sub(added, 1);
	return 0;
}

static __always_inline void give_back(struct quota_key *q)
{
	__u64 *added = bpf_map_lookup_elem(&quota_added, q);
	if (added)
		__sync_fetch_and_sub(added, 1);
}

static __always_inline int netns_quota(const struct drop_key *k)
{
	return max_keys_per_netns && k->netns != 0 && k->netns != own_netns;
}

/* admit charges a new key to its interface and namespace: 1, 0 or -1 as
 * take. */
static __always_inline int admit(const struct drop_key *k)
{
	struct quota_key iface = {.netns = k->netns, .ifindex = k->ifindex};
	struct quota_key ns = {.netns = k->netns, .ifindex = QUOTA_NETNS};
	int r;
	if (max_keys_per_iface) {
		r = take(&iface, max_keys_per_iface);
		if (r <= 0)
			return r;
	}
	if (netns_quota(k)) {
		r = take(&ns, max_keys_per_netns);
		if (r <= 0) {
			if (max_keys_per_iface)
				give_back(&iface);
			return r;
		}
	}
	return 1;
}

/* release undoes admit, for a key that was not inserted after all. */
static __always_inline void release(const struct drop_key *k)
{
	struct quota_key iface = {.netns = k->netns, .ifindex = k->ifindex};
	struct quota_key ns = {.netns = k->netns, .ifindex = QUOTA_NETNS};
	if (max_keys_per_iface)
		give_back(&iface);
	if (netns_quota(k))
		give_back(&ns);
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&lost, &zero);
	if (v)
		*v += 1;
}

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
	__u64 *v = bpf_map_lookup_elem(&drops, k);
	if (v) {
		*v += 1;
		return;
	}
	/* A new key: its interface and namespace pay for it first. */
	int r = admit(k);
	if (r == 0) {
		if (counter_add(&refused, &k->reason, 1))
			count_lost();
		return;
	}
	if (r > 0) {
		__u64 one = 1;
		long err = bpf_map_update_elem(&drops, k, &one, BPF_NOEXIST);
		if (!err)
			return;
		/* Not ours after all: inserted by another CPU meanwhile, or
		 * no room. */
		release(k);
		if (err == -NETSONDE_EEXIST) {
			v = bpf_map_lookup_elem(&drops, k);
			if (v) {
				*v += 1;
				return;
			}
		}
	}
	/* The keyed map is full: count by reason alone, then at all. */
	if (counter_add(&overflow, &k->reason, 1))
		count_lost();
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb_btf, struct sk_buff *skb, void *location, unsigned int reason)
{
	if (reason < FIRST_DROP_REASON)
		return 0;
	struct drop_key k = {.reason = reason, .protocol = proto_key(skb->protocol)};
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
		k.netns = net->net_cookie;
	if (ignored(k.netns))
		return 0;
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
		k->netns = BPF_CORE_READ(dev, nd_net.net, net_cookie);
	} else {
		struct sock *sk = BPF_CORE_READ(skb, sk);
		if (sk)
			k->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
	}
	if (ignored(k->netns))
		return;
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
	struct drop_key k = {.reason = reason, .protocol = proto_key(BPF_CORE_READ(skb, protocol))};
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
	/* The record has ntohs(skb->protocol): back to the skb's order for
	 * proto_key, like the other two entry points. */
	struct drop_key k = {.reason = reason, .protocol = proto_key(bpf_htons(protocol))};
	count_read(&k, skb);
	return 0;
}
