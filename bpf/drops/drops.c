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
		if (s->key.reason == k->reason && s->key.ifindex == k->ifindex && s->key.netns == k->netns &&
		    s->key.protocol == k->protocol) {
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

/* --- Capture (netsonde capture): on demand only. ---
 *
 * While no capture is attached, capture_on[0] is 0 and the program pays one
 * array lookup and a compare for it (BENCHMARKS.md, dropcost). While one is,
 * a drop that matches a capture's filter (reason, network namespace,
 * interface, EtherType: evaluated here) and that its rate limit admits has
 * its headers copied into the ring buffer. DESIGN.md allows this one ring
 * buffer: on demand, filtered in the kernel, rate-limited. */
#define MAX_CAPTURES 4
#define MAX_CAPTURE_REASONS 8
/* The most bytes of a packet one record holds (--snaplen's bound). */
#define MAX_SNAPLEN 1024

struct capture_filter {
	__u32 active;
	__u32 ifindex;  /* 0: any */
	__u64 netns;    /* a namespace's cookie, as drop_key's; 0: any */
	__u16 protocol; /* EtherType, host order; 0: any */
	__u16 nreasons; /* 0: any */
	__u32 reasons[MAX_CAPTURE_REASONS];
	__u32 snaplen;
	__u32 rate; /* records a second at most */
};

/* Per capture: its one-second window and what the limit refused. */
struct capture_state {
	__u64 window;  /* bpf_ktime_get_ns() / CAPTURE_WINDOW_NS */
	__u64 used;    /* records admitted in that window */
	__u64 refused; /* matching drops the rate limit refused */
	__u64 emitted;
	__u64 nospace; /* admitted but the ring buffer was full */
};

struct capture_record {
	__u64 ts;       /* bpf_ktime_get_ns() */
	__u64 location; /* kfree_skb's caller, a kernel text address */
	__u64 netns;    /* the namespace's cookie */
	__u32 reason;
	__u32 ifindex;
	__u32 len;      /* skb->len */
	__u32 caplen;   /* bytes of data[] that hold the packet from L3 */
	__u16 protocol; /* EtherType, host order */
	__u16 captures; /* bit i: capture i matched */
	__u8 data[MAX_SNAPLEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} capture_on SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CAPTURES);
	__type(key, __u32);
	__type(value, struct capture_filter);
} capture_filters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CAPTURES);
	__type(key, __u32);
	__type(value, struct capture_state);
} capture_states SEC(".maps");

/* 256 KiB: about 200 full records; the reader drains it continuously, and
 * what does not fit is counted (nospace), never waited for. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} capture_ring SEC(".maps");

static __always_inline int capture_match(const struct capture_filter *f, const struct drop_key *k)
{
	if (!f->active)
		return 0;
	if (f->netns && f->netns != k->netns)
		return 0;
	if (f->ifindex && f->ifindex != k->ifindex)
		return 0;
	if (f->protocol && f->protocol != k->protocol)
		return 0;
	if (!f->nreasons)
		return 1;
#pragma unroll
	for (int i = 0; i < MAX_CAPTURE_REASONS; i++) {
		if (i >= f->nreasons)
			break;
		if (f->reasons[i] == k->reason)
			return 1;
	}
	return 0;
}

/* capture_admit is the rate limit: a fixed window of a tenth of a second
 * per capture, a tenth of the rate in each, so that a storm's burst at a
 * window's start (a tenth of a second's worth, about 100 KiB at the default
 * 1,000/s) fits the ring buffer and the reader's queue. Two CPUs opening a
 * window at once may both reset it: the bound is then exceeded by a few
 * records, never by more. */
#define CAPTURE_WINDOW_NS 100000000ull

static __always_inline int capture_admit(struct capture_state *st, __u32 rate)
{
	__u64 w = bpf_ktime_get_ns() / CAPTURE_WINDOW_NS;
	__u64 per = (rate + 9) / 10;
	if (st->window != w) {
		st->window = w;
		st->used = 0;
	}
	if (__sync_fetch_and_add(&st->used, 1) < per)
		return 1;
	__sync_fetch_and_add(&st->refused, 1);
	return 0;
}

/* The fields of sk_buff a capture reads, as a CO-RE flavour of it, so that
 * the shared header keeps only what every program uses. tail is an offset
 * from head on 64-bit kernels (NET_SKBUFF_DATA_USES_OFFSET). */
struct sk_buff___capture {
	unsigned int len;
	__u16 network_header;
	__u32 tail;
	unsigned char *head;
	unsigned char *data;
} __attribute__((preserve_access_index));

/* The loops over the captures are unrolled, each with its own constant
 * key: the verifiers of 6.1 and 6.12 (the kernel matrix's; 6.18 does not)
 * turn the bytes of a stack slot that a helper reads (here the map key,
 * &i) into unknown ones, so a loop counter whose address is taken reads
 * back unbounded, i < MAX_CAPTURES cannot be decided, and the verifier,
 * seeing the loop's head again in the same state, refuses the program as
 * an infinite loop. */
static __noinline void capture(struct sk_buff *skb_in, __u64 location, const struct drop_key *k)
{
	struct sk_buff___capture *skb = (void *)skb_in;
	__u16 mask = 0;
	__u32 snap = 0;
#pragma unroll
	for (__u32 i = 0; i < MAX_CAPTURES; i++) {
		__u32 key = i;
		struct capture_filter *f = bpf_map_lookup_elem(&capture_filters, &key);
		if (!f || !capture_match(f, k))
			continue;
		struct capture_state *st = bpf_map_lookup_elem(&capture_states, &key);
		if (!st || !capture_admit(st, f->rate))
			continue;
		mask |= 1 << i;
		if (f->snaplen > snap)
			snap = f->snaplen;
	}
	if (!mask)
		return;
	struct capture_record *r = bpf_ringbuf_reserve(&capture_ring, sizeof(*r), 0);
	if (!r) {
#pragma unroll
		for (__u32 i = 0; i < MAX_CAPTURES; i++) {
			__u32 key = i;
			struct capture_state *st = bpf_map_lookup_elem(&capture_states, &key);
			if (st && (mask & (1 << i)))
				__sync_fetch_and_add(&st->nospace, 1);
		}
		return;
	}
	r->ts = bpf_ktime_get_ns();
	r->location = location;
	r->reason = k->reason;
	r->ifindex = k->ifindex;
	r->netns = k->netns;
	r->protocol = k->protocol;
	r->captures = mask;
	__u32 len = BPF_CORE_READ(skb, len);
	r->len = len;
	r->caplen = 0;
	/* From the network header to the end of the linear data: the headers,
	 * and the payload as far as it is linear and snap allows. */
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned char *data = BPF_CORE_READ(skb, data);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u32 tail = BPF_CORE_READ(skb, tail);
	/* len is the packet's from the network header, as the record says:
	 * skb->len counts from data, which a drop past IP (no socket, a
	 * full receive buffer) has moved beyond the IP header, and a drop
	 * before it (in the device) still has in front of the link-layer
	 * header. */
	if (head && data >= head && nh != (__u16)~0U) {
		__s64 l3 = (__s64)len + (data - head) - nh;
		if (l3 > 0 && l3 <= 0xffffffffll)
			r->len = l3;
	}
	if (head && nh != (__u16)~0U && tail > nh) {
		/* 64-bit: a 32-bit register copy loses its bounds on 6.1's
		 * verifier, and clang copies n before the MAX_SNAPLEN compare,
		 * so the helper's size would be unbounded there. */
		__u64 n = tail - nh;
		if (n > snap)
			n = snap;
		if (n > MAX_SNAPLEN)
			n = MAX_SNAPLEN;
		if (n > 0 && bpf_probe_read_kernel(r->data, n, head + nh) == 0)
			r->caplen = n;
	}
#pragma unroll
	for (__u32 i = 0; i < MAX_CAPTURES; i++) {
		__u32 key = i;
		struct capture_state *st = bpf_map_lookup_elem(&capture_states, &key);
		if (st && (mask & (1 << i)))
			__sync_fetch_and_add(&st->emitted, 1);
	}
	bpf_ringbuf_submit(r, 0);
}

/* capturing is the only cost of capture while none is attached. */
static __always_inline int capturing(void)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&capture_on, &zero);
	return on && *on;
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
	if (capturing())
		capture(skb, (__u64)location, &k);
	return 0;
}

/* count_read fills in the interface and namespace with CO-RE reads (the
 * raw_tp and classic forms, whose skb is not a typed pointer) and counts. */
static __always_inline void count_read(struct drop_key *k, struct sk_buff *skb, __u64 location)
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
	if (capturing())
		capture(skb, location, k);
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
	count_read(&k, skb, (__u64)location);
	return 0;
}

/* The classic skb:kfree_skb tracepoint, whose record layout changed in
 * 6.11 (rx_sk inserted before protocol): the loader reads the running
 * kernel's format and sets these offsets. */
__u32 tp_off_skbaddr = 8;
__u32 tp_off_location = 16;
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
	__u64 location = 0;
	TP_READ(ctx, tp_off_location, location);
	/* The record has ntohs(skb->protocol): back to the skb's order for
	 * proto_key, like the other two entry points. */
	struct drop_key k = {.reason = reason, .protocol = proto_key(bpf_htons(protocol))};
	count_read(&k, skb, location);
	return 0;
}
