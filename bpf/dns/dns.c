//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * DNS health seen from the client's side, counted once per query and
 * answer, in one of two places (the loader attaches one set):
 *
 * - TC programs on every interface of the node's namespace (the default):
 *   a pod's query is what its veth receives with a DNS destination port,
 *   its answer what the veth sends with a DNS source port, keyed by the
 *   veth's index; the host's own sockets' queries are what they send, keyed
 *   0. Only pod veths and the host's own packets cost more than a port
 *   check. See tc_ingress below.
 * - Two cgroup_skb programs on the cgroup v2 root, which see every packet
 *   of every socket on the node, in every network namespace, once and on
 *   the client's side: egress with a destination port of a DNS server is a
 *   query, ingress with such a source port is an answer, keyed by the
 *   socket's network namespace. For pods without a veth (netkit, ipvlan)
 *   or a dataplane that delivers to pods past their veth (bpf_redirect_peer),
 *   at the price of a program run for every packet of every socket.
 *
 * A query is remembered in an array of queries in flight, 2-way set
 * associative: a hash of its key (the interface or namespace, the 5-tuple
 * and the DNS ID) picks a pair of adjacent slots, and it takes a free or
 * an expired one, else the older one it may displace; each owner (pod,
 * namespace, node) has a quota of slots, and a query never displaces
 * another owner's unless that owner has more in flight than its own. The
 * answer that matches closes it and its latency goes into a per-CPU
 * histogram. Queries
 * never answered are found by user space, which sweeps the table for
 * entries older than the timeout: nothing is sent to user space per packet.
 *
 * A program on kfree_skb counts the DNS packets the kernel drops, by the
 * kernel's drop reason and the network namespace they were dropped in.
 */
#include "../include/netsonde.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

/* A query's owner, whom it is counted for: under the cgroup_skb hook
 * (AT_CGROUP) the client socket's network namespace's cookie; under tc
 * (AT_TC) the ifindex of the pod's veth the query crossed, or 0 for the
 * host's own sockets, which user space maps to a pod by the interface.
 * It is the owner of the flow key, the in-flight slot and the query key,
 * and the key of answers, timeouts and refused. */
struct flow_key {
	__u64 owner;    /* the client's (above) */
	__u16 id;       /* DNS ID, as on the wire */
	__u16 lport;    /* the client's port, network byte order */
	__u16 rport;    /* the server's port, network byte order */
	__u8 family;    /* 4 or 6 */
	__u8 proto;     /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 laddr[16]; /* the client's address (IPv4 in the first 4 bytes) */
	__u8 raddr[16]; /* the server's address */
};

/* A slot of the in-flight array. ts: 0 free, 1 being written by the CPU
 * that claimed it, else bpf_ktime_get_ns() when the query left. */
/* A slot of the in-flight table, 32 bytes: a bucket of two slots is one
 * cache line (the array's memory is page-aligned, being mmapable), which
 * a query and its answer each touch once. With a 16,384-slot table the
 * full 44-byte key in the slot made three lines per bucket, and the
 * cache misses cost more than the rest of the programs (kernel
 * accounting: 252 ns per run against 184 with a table of 1,024). The key
 * is kept as its 64-bit hash: two different queries of one bucket share
 * one with a chance of 2^-51 (the bucket's bits are the hash's too). The
 * query's type is not kept: it is counted when the query leaves, and
 * nothing read it back; its bytes hold the 64-bit namespace cookie. */
struct flow_val {
	__u64 ts;
	__u64 fp;    /* the flow key's hash (flow_hash), never 0 */
	__u64 owner; /* the flow key's: whom a timeout and the slot are counted for */
	__u64 name;  /* hash of the question's name (--dns.top-failing-names), else 0 */
};
_Static_assert(sizeof(struct flow_val) == 32, "in-flight slot is not 32 bytes");

struct query_key {
	__u64 owner; /* the flow key's */
	__u16 qtype; /* one of the types named in user space, else 0 */
	__u16 pad;
	__u32 pad2;
};

struct drop_key {
	__u64 netns;
	__u32 reason;
	__u32 pad;
};

/* Counters of the whole object, in the stats array. */
enum {
	STAT_TRACKED = 0,   /* queries inserted into the in-flight table */
	STAT_ANSWERED,      /* answers that closed a query in time */
	STAT_LATE,          /* answers that closed a query after the timeout */
	STAT_UNMATCHED,     /* answers to no query in flight */
	STAT_MALFORMED,     /* port-53 packets too short or not DNS */
	STAT_RETRANSMITTED, /* a query sent again while still in flight */
	STAT_NOT_TRACKED,   /* queries not tracked: their slots were being written */
	STAT_LOST,          /* counts lost: a counter map was full */
	STAT_EVICTED,       /* queries displaced in time by another (both slots live) */
	STAT_REFUSED,       /* queries not tracked: their owner was at its quota (also in refused) */
	STAT_MAX,
};

/* Upper edges of the latency buckets, in nanoseconds: 1 ms to 5 s, with
 * edges at 0.2 s and 1 s (the alerting thresholds people use). The last
 * bucket, NBUCKETS-1, is everything above 5 s. Kept in step with
 * bpf/dns/load.go. */
#define NEDGES 12
#define NBUCKETS (NEDGES + 1)
static const __u64 edges[NEDGES] = {
	1000000ULL,   2000000ULL,   5000000ULL,   10000000ULL,   20000000ULL,   50000000ULL,
	100000000ULL, 200000000ULL, 500000000ULL, 1000000000ULL, 2000000000ULL, 5000000000ULL,
};

/* Set by the loader before load. */
volatile const __u64 timeout_ns = 5000000000ULL;
/* DNS server ports besides 53 (--dns.ports), host byte order, 0 unused. */
#define MAX_PORTS 8
volatile const __u16 extra_ports[MAX_PORTS];

/* Tests count only the namespaces they made (--dns.only-netns, hidden):
 * the node's other DNS traffic must not change their exact counts. */
NETSONDE_ONLY_NETNS

/* Queries in flight: an array of a power of two slots (--dns.max-inflight,
 * rounded up by the loader, which sets inflight_mask to their number less
 * one), in buckets of two adjacent slots. A query's bucket is a hash of
 * its key; it takes a free slot of the two, else one it may displace
 * (slot_rank, owner_inflight). Array
 * lookups are inlined by the verifier: no helper call per query or
 * answer. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	/* User space's sweep claims old slots by compare-and-swap on ts in
	 * a shared mapping of the values. */
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16384); /* --dns.max-inflight */
	__type(key, __u32);
	__type(value, struct flow_val);
} inflight SEC(".maps");

volatile const __u32 inflight_mask = 16384 - 1;

/* Queries each owner (a pod's veth, a network namespace, the node: the
 * flow key's owner) has in the in-flight table, so that one pod's flood
 * cannot take the table from the others. An owner at owner_quota
 * (--dns.max-inflight-per-pod) gets no new slot: its query is counted
 * in refused and not tracked; it may only take back one of its own
 * expired slots. A query displaces another owner's query in time only
 * if that owner has more in flight than its own: a pod with a few
 * queries out keeps them to their answer or timeout, whatever a heavier
 * one sends. The count is incremented when a query is published in a
 * slot and decremented by whoever frees the slot (an answer, a query
 * displacing it, user space's sweep, all by compare-and-swap on ts), so
 * it is an array user space maps as it maps the table.
 *
 * Indexed by the owner's low 15 bits (owner_count): interface indexes and
 * namespace cookies are handed out densely (cookies in per-CPU batches of
 * 4,096 on some kernels), so the owners present at one time share a
 * counter only if they are a multiple of 32,768 apart (two that do share
 * one quota). 8 bytes a counter, the stride of an mmapable
 * array's values anyway: 256 KiB. Signed: a count is never below 0, but a
 * reader must not take a passing -1 for a huge one. About the quota:
 * CPUs that check it at once may each pass it by one. */
#define NOWNERS 32768
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, NOWNERS);
	__type(key, __u32);
	__type(value, __s64);
} owner_inflight SEC(".maps");

volatile const __s64 owner_quota = 16384 / 4;

static __always_inline __s64 *owner_count(__u64 owner)
{
	__u32 i = (__u32)owner & (NOWNERS - 1);
	return bpf_map_lookup_elem(&owner_inflight, &i);
}

static __always_inline __s64 owner_load(__u64 owner)
{
	__s64 *c = owner_count(owner);
	return c ? *(volatile __s64 *)c : 0;
}

static __always_inline void owner_add(__u64 owner, __s64 by)
{
	__s64 *c = owner_count(owner);
	if (c)
		__sync_fetch_and_add(c, by);
}

#define KEY_WORDS (sizeof(struct flow_key) / 4)
_Static_assert(sizeof(struct flow_key) == 48, "flow_key has padding");

/* flow_hash: the key's 64-bit hash, never 0. The key's 12 32-bit words
 * are taken two at a time, each pair mixed in with a multiply, then a
 * final avalanche (murmur3's fmix64). Its low bits pick the bucket
 * (flow_bucket); all of it stands for the key in the slot. */
static __always_inline __u64 flow_hash(const struct flow_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u64 h = 0x9e3779b97f4a7c15ULL;
#pragma clang loop unroll(full)
	for (int i = 0; i + 1 < KEY_WORDS; i += 2) {
		h ^= (__u64)w[i] | (__u64)w[i + 1] << 32;
		h *= 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	h ^= w[KEY_WORDS - 1];
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h ? h : 1;
}

/* flow_bucket: the first slot of a hash's bucket. */
static __always_inline __u32 flow_bucket(__u64 h)
{
	return (__u32)h & inflight_mask & ~1u;
}

/* slot_ts reads a slot's ts once (another CPU or the sweep may change it). */
#define slot_ts(v) (*(volatile __u64 *)&(v)->ts)

/* Label sets: owners (hundreds) x the few named types or rcodes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct query_key);
	__type(value, __u64);
} queries SEC(".maps");

/* What an answer counts, in one value per owner: its rcode, its
 * latency's bucket and the latencies' sum, with one lookup instead of one
 * per counter. Allocated when an owner gets its first answer (no
 * prealloc: 240 bytes per CPU per owner that has answers). */
struct ans_val {
	__u64 rcode[16];        /* by the header's 4-bit RCODE */
	__u64 bucket[NBUCKETS]; /* latency histogram, not cumulative */
	__u64 sum;              /* sum of the latencies, ns */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ans_val);
} answers SEC(".maps");

/* Timeouts found in the kernel: an answer that came after the timeout but
 * before the sweep, or a query re-sent on the same key after it. The rest
 * are found by user space's sweep. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} timeouts SEC(".maps");

/* Queries not tracked because their owner had owner_quota in flight,
 * per owner. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} refused SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

/* count adds to a labelled counter; a full map loses the count, and says
 * so in STAT_LOST rather than silently. */
static __always_inline void count(void *map, const void *key, __u64 by)
{
	if (counter_add(map, key, by))
		stat(STAT_LOST);
}

static __always_inline int dns_port(__u16 port)
{
	if (port == 53)
		return 1;
#pragma clang loop unroll(full)
	for (int i = 0; i < MAX_PORTS; i++) {
		if (extra_ports[i] && extra_ports[i] == port)
			return 1;
	}
	return 0;
}

/* bpf_rdonly_cast (6.2+) turns the socket pointer of the context into a
 * read-only kernel struct sock, so its namespace's cookie is read with
 * plain loads (they cannot fault: the verifier guards them). */
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym;

/* Before 6.2 there is no bpf_rdonly_cast, and the verifier forbids
 * arithmetic on the context's socket pointer, so a CO-RE read cannot start
 * from it. The pointer is stored in a map value and loaded back, which
 * makes it a plain number (a privileged program may do this), and the
 * namespace is then read with bpf_probe_read_kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sk_scratch SEC(".maps");

static __always_inline __u64 sock_netns(struct __sk_buff *skb, const int cast)
{
	struct bpf_sock *bsk = skb->sk;
	if (!bsk)
		return 0;
	if (cast) {
		struct sock *sk = bpf_rdonly_cast(bsk, bpf_core_type_id_kernel(struct sock));
		return sk->__sk_common.skc_net.net->net_cookie;
	}
	__u32 zero = 0;
	__u64 *slot = bpf_map_lookup_elem(&sk_scratch, &zero);
	if (!slot)
		return 0;
	*slot = (__u64)bsk;
	/* The compiler must load it back from the map, not reuse bsk. */
	asm volatile("" ::: "memory");
	struct sock *sk = (struct sock *)*(volatile __u64 *)slot;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
}

/* L2 is where the network header starts: 0 for cgroup_skb, whose data
 * starts there, and for TC on a device without a link-layer header;
 * ETH_HLEN for TC on an Ethernet device (a veth, lo), whose data starts at
 * the Ethernet header. Every offset below is from the start
 * of the data, so only parse() and maybe_dns() add it. */
#define ETH_HLEN 14

/* load reads len (a constant) bytes at off: with direct packet access when
 * they are in the linear part, as they nearly always are for DNS, else
 * with bpf_skb_load_bytes. Same result either way. */
static __always_inline int load(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (off < 0x1000) {
		__u8 *s = data + off;
		if ((void *)(s + len) <= end) {
			__builtin_memcpy(to, s, len);
			return 0;
		}
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

struct pkt {
	struct flow_key key; /* lport/laddr: source; user code swaps for answers */
	__u32 dns_off;       /* offset of the DNS header */
	__u32 dns_len;       /* bytes of DNS message in this packet */
	__u16 sport, dport;  /* host byte order */
};

/* parse reads the IP and transport headers of a packet whose network
 * header is at l2 (0 for cgroup_skb, ETH_HLEN for TCX). It returns 0 for a
 * UDP datagram or a TCP segment whose ports are to be looked at, filling
 * p; p's offsets are from the start of the data. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p, const __u32 l2)
{
	/* Zeroed first, though every byte read is loaded: 6.18's verifier
	 * fails on a bug of its own (EFAULT, "stack slot 17, total slots 0")
	 * when it tracks the precision of bytes bpf_skb_load_bytes wrote back
	 * to a state where the stack was not written yet (a two-slot table,
	 * whose bucket index it follows back to the addresses). */
	__u8 ip[40] = {};
	__u32 l4;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (load(skb, l2, ip, 20))
			return -1;
		if ((ip[0] >> 4) != 4)
			return -1;
		/* A later fragment has no ports; the first has them. */
		if (((ip[6] & 0x1f) | ip[7]) != 0)
			return -1;
		l4 = l2 + (ip[0] & 0xf) * 4;
		p->key.proto = ip[9];
		p->key.family = 4;
		__builtin_memcpy(p->key.laddr, &ip[12], 4);
		__builtin_memcpy(p->key.raddr, &ip[16], 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (load(skb, l2, ip, 40))
			return -1;
		/* Extension headers before UDP/TCP are not walked. */
		l4 = l2 + 40;
		p->key.proto = ip[6];
		p->key.family = 6;
		__builtin_memcpy(p->key.laddr, &ip[8], 16);
		__builtin_memcpy(p->key.raddr, &ip[24], 16);
	} else {
		return -1;
	}
	if (p->key.proto != IPPROTO_UDP && p->key.proto != IPPROTO_TCP)
		return -1;
	__be16 ports[2];
	if (load(skb, l4, ports, 4))
		return -1;
	p->key.lport = ports[0];
	p->key.rport = ports[1];
	p->sport = bpf_ntohs(ports[0]);
	p->dport = bpf_ntohs(ports[1]);
	if (p->key.proto == IPPROTO_UDP) {
		p->dns_off = l4 + 8;
	} else {
		__u8 doff;
		if (load(skb, l4 + 12, &doff, 1))
			return -1;
		p->dns_off = l4 + (doff >> 4) * 4;
	}
	p->dns_len = skb->len > p->dns_off ? skb->len - p->dns_off : 0;
	return 0;
}

/* Which port maybe_dns looks at, and what it found. */
#define PORT_SRC 1
#define PORT_DST 2
#define PORT_UNKNOWN 4 /* headers not in the linear part: either port may be, parse() must look */

/* maybe_dns is the fast path every packet takes: with direct packet
 * access (no helper call), is the source or destination port (which, one
 * or both PORT_*) a DNS port? 0: certainly not, return at once; else the
 * PORT_* that are, or every one asked with PORT_UNKNOWN. *dport is the
 * destination port (host order) when known. The network header is at l2, as for parse(). */
static __always_inline int maybe_dns(struct __sk_buff *skb, const int which, const __u32 l2, __u16 *dport)
{
	const int unknown = which | PORT_UNKNOWN;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *ip = data + l2;
	__u32 l4;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if ((void *)(ip + 20) > end)
			return unknown;
		if (ip[9] != IPPROTO_UDP && ip[9] != IPPROTO_TCP)
			return 0;
		l4 = l2 + (ip[0] & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(ip + 40) > end)
			return unknown;
		if (ip[6] != IPPROTO_UDP && ip[6] != IPPROTO_TCP)
			return 0;
		l4 = l2 + 40;
	} else {
		return 0;
	}
	__be16 *ports = data + l4;
	if ((void *)(ports + 2) > end)
		return unknown;
	*dport = bpf_ntohs(ports[1]);
	int m = 0;
	if ((which & PORT_SRC) && dns_port(bpf_ntohs(ports[0])))
		m |= PORT_SRC;
	if ((which & PORT_DST) && dns_port(*dport))
		m |= PORT_DST;
	return m;
}

struct dnshdr {
	__be16 id;
	__be16 flags;
	__be16 qdcount;
	__be16 ancount;
	__be16 nscount;
	__be16 arcount;
};

/* dns_header reads the DNS header. Over TCP the message has a 2-byte
 * length first, and only a segment that carries exactly one whole message
 * is read: a message split over segments, or several in one, is not. */
static __always_inline int dns_header(struct __sk_buff *skb, struct pkt *p, struct dnshdr *h)
{
	if (p->key.proto == IPPROTO_TCP) {
		__be16 len;
		/* SYN, ACK, FIN: no message, nothing wrong. */
		if (p->dns_len == 0)
			return 1;
		if (p->dns_len < 2 + sizeof(*h))
			return -1;
		if (load(skb, p->dns_off, &len, 2))
			return -1;
		if (bpf_ntohs(len) != p->dns_len - 2)
			return -1;
		p->dns_off += 2;
		p->dns_len -= 2;
	}
	if (p->dns_len < sizeof(*h))
		return -1;
	if (load(skb, p->dns_off, h, sizeof(*h)))
		return -1;
	return 0;
}

/* The types given their own qtype label; the rest are 0 ("other"). */
static __always_inline __u16 fold_qtype(__u16 t)
{
	switch (t) {
	case 1:  /* A */
	case 2:  /* NS */
	case 5:  /* CNAME */
	case 6:  /* SOA */
	case 12: /* PTR */
	case 15: /* MX */
	case 16: /* TXT */
	case 28: /* AAAA */
	case 33: /* SRV */
	case 65: /* HTTPS */
		return t;
	default:
		return 0;
	}
}

/* MAX_LABELS bounds the walk of the question's name: a name is at most
 * 255 bytes, so at most 127 labels. */
#define MAX_LABELS 128

/* qtype_slow walks the first question's name (uncompressed, as in a
 * query) one byte load at a time and returns its folded type, or 0 for a
 * name that is not well formed (compression pointer, longer than 255
 * bytes, cut short). */
static __always_inline __u16 qtype_slow(struct __sk_buff *skb, struct pkt *p)
{
	__u32 off = p->dns_off + sizeof(struct dnshdr);
	__u32 end = p->dns_off + p->dns_len;
	__u32 name = 0;
	for (int i = 0; i < MAX_LABELS; i++) {
		__u8 l;
		if (off >= end || bpf_skb_load_bytes(skb, off, &l, 1))
			return 0;
		off++;
		if (l == 0) {
			__be16 t;
			if (off + 2 > end || bpf_skb_load_bytes(skb, off, &t, 2))
				return 0;
			return fold_qtype(bpf_ntohs(t));
		}
		/* 0xc0: a compression pointer, which could loop; 0x40/0x80 are
		 * not label lengths. */
		if (l & 0xc0)
			return 0;
		name += l + 1;
		if (name > 255)
			return 0;
		off += l;
	}
	return 0;
}

/* qtype_pkt is qtype_slow with direct packet access: the name is walked
 * where it lies, without a copy or a helper call. A name not all in the
 * linear part is left to qtype_slow. */
static __always_inline __u16 qtype_pkt(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *dend = (void *)(long)skb->data_end;
	__u32 off = p->dns_off + sizeof(struct dnshdr);
	__u32 end = p->dns_off + p->dns_len;
	__u32 name = 0;
	for (int i = 0; i < MAX_LABELS; i++) {
		if (off >= end || off > 0x1000)
			return 0;
		__u8 *q = data + off;
		if ((void *)(q + 3) > dend)
			break;
		__u8 l = q[0];
		off++;
		if (l == 0) {
			if (off + 2 > end)
				return 0;
			return fold_qtype((__u16)q[1] << 8 | q[2]);
		}
		if (l & 0xc0)
			return 0;
		name += l + 1;
		if (name > 255)
			return 0;
		off += l;
	}
	if (off >= end || off > 0x1000)
		return 0;
	return qtype_slow(skb, p);
}

/* QBUF bytes of question are read with one helper call and walked on the
 * stack: names up to about 120 bytes, nearly all of them, cost one load
 * instead of one per label. Longer ones take qtype_slow. */
#define QBUF 128

/* qtype reads the question into buf (QBUF bytes, zeroed by the caller)
 * and returns the folded type; *namelen is the wire name's length with its
 * final 0 when it was walked in buf, else 0. */
static __always_inline __u16 qtype(struct __sk_buff *skb, struct pkt *p, __u8 *buf, __u32 *namelen)
{
	__u32 start = p->dns_off + sizeof(struct dnshdr);
	__u32 end = p->dns_off + p->dns_len;
	if (start >= end)
		return 0;
	__u32 avail = end - start;
	if (avail > QBUF)
		avail = QBUF;
	/* 1 <= avail <= QBUF here; written so that the verifier sees those
	 * bounds on the register it passes (6.1's loses them across a
	 * compare, and refuses a length that may be 0). */
	__u32 len = ((avail - 1) & (QBUF - 1)) + 1;
	asm volatile("" : "+r"(len));
	if (bpf_skb_load_bytes(skb, start, buf, len))
		return qtype_slow(skb, p);
	__u32 pos = 0, name = 0;
	for (int i = 0; i < MAX_LABELS; i++) {
		if (pos >= avail)
			return qtype_slow(skb, p);
		__u8 l = buf[pos & (QBUF - 1)];
		if (l == 0) {
			if (pos + 2 < avail) {
				*namelen = pos + 1;
				return fold_qtype((__u16)buf[(pos + 1) & (QBUF - 1)] << 8 |
				                  buf[(pos + 2) & (QBUF - 1)]);
			}
			return qtype_slow(skb, p);
		}
		if (l & 0xc0)
			return 0;
		name += l + 1;
		if (name > 255)
			return 0;
		pos += l + 1;
	}
	return 0;
}

/* --dns.top-failing-names: names of queries, by hash, and NXDOMAIN answers
 * per name, both bounded LRU tables (sized by the loader); timeouts per
 * name are counted by user space's sweep from the in-flight entry's hash.
 * Off (top_names 0), none of this runs. */
volatile const __u8 top_names;

struct name_val {
	__u8 name[QBUF]; /* the wire name, from its first length byte */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct name_val);
} names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} name_nxdomain SEC(".maps");

/* FNV-1a over the wire name (at most QBUF bytes). */
static __always_inline __u64 name_hash(const __u8 *buf, __u32 len)
{
	__u64 h = 14695981039346656037ULL;
	for (int i = 0; i < QBUF; i++) {
		if (i >= len)
			break;
		h ^= buf[i];
		h *= 1099511628211ULL;
	}
	return h ? h : 1;
}

static __always_inline __u32 bucket_of(__u64 d)
{
	__u32 b = NEDGES;
#pragma clang loop unroll(full)
	for (int i = NEDGES - 1; i >= 0; i--) {
		if (d <= edges[i])
			b = i;
	}
	return b;
}

static __always_inline void count_timeout(__u64 owner)
{
	count(&timeouts, &owner, 1);
}

/* How good a slot of a query's bucket is to take, 0 not at all: a free
 * one, else an expired one, else one holding in time the query of an
 * owner with more in flight than this query's owner (have), else one
 * holding this owner's own older query; never one another CPU is writing
 * (ts 1). An owner at its quota (full) may take only its own expired
 * slots, which leaves its count as it is. The slot's owner is read
 * before the claim: if the slot changes in between, so does its ts, and
 * the claim fails. */
#define RANK_OWN 1
#define RANK_HEAVIER 2
#define RANK_EXPIRED 3
#define RANK_FREE 4

static __always_inline int slot_rank(struct flow_val *s, __u64 ts, __u64 now, __u64 key, __s64 have, int full)
{
	if (ts == 1)
		return 0;
	if (ts == 0)
		return full ? 0 : RANK_FREE;
	__u64 who = *(volatile __u64 *)&s->owner;
	if (now > ts && now - ts > timeout_ns)
		return !full || who == key ? RANK_EXPIRED : 0;
	if (full)
		return 0;
	if (who == key)
		return RANK_OWN;
	return owner_load(who) > have ? RANK_HEAVIER : 0;
}

/* Where the programs run, which decides what keys a query and how its
 * network namespace filter (tests) applies. */
#define AT_CGROUP 0 /* cgroup_skb: keyed by the socket's namespace's cookie */
#define AT_TC 1     /* TCX/tc on an interface: keyed by the interface (0: the host's sockets) */

/* query counts a query (destination port a DNS port, p parsed) under key
 * and remembers it in the in-flight table. */
static __always_inline int query(struct __sk_buff *skb, struct pkt *p, __u64 key, const int at)
{
	struct dnshdr h;
	int err = dns_header(skb, p, &h);
	if (err) {
		if (err < 0)
			stat(STAT_MALFORMED);
		return 1;
	}
	/* QR set: an answer leaving a server bound to an odd port; opcode
	 * other than QUERY(0): not a lookup. */
	__u16 flags = bpf_ntohs(h.flags);
	if ((flags & 0x8000) || ((flags >> 11) & 0xf) != 0) {
		stat(STAT_MALFORMED);
		return 1;
	}
	p->key.owner = key;
	if (at == AT_CGROUP && ignored(key))
		return 1;
	p->key.id = h.id;
	__u16 t = 0;
	__u64 nh = 0;
	if (top_names) {
		__u8 buf[QBUF] = {};
		__u32 namelen = 0;
		t = bpf_ntohs(h.qdcount) ? qtype(skb, p, buf, &namelen) : 0;
		if (namelen) {
			nh = name_hash(buf, namelen);
			bpf_map_update_elem(&names, &nh, buf, BPF_ANY);
		}
	} else if (bpf_ntohs(h.qdcount)) {
		/* No name kept: walk the name in the packet itself, no copy. */
		t = qtype_pkt(skb, p);
	}
	struct query_key qk = {.owner = key, .qtype = t};
	count(&queries, &qk, 1);

	__u64 now = bpf_ktime_get_ns();
	__u64 fp = flow_hash(&p->key);
	__u32 idx = flow_bucket(fp);
	struct flow_val *s0 = bpf_map_lookup_elem(&inflight, &idx);
	idx++;
	struct flow_val *s1 = bpf_map_lookup_elem(&inflight, &idx);
	if (!s0 || !s1) {
		stat(STAT_NOT_TRACKED);
		return 1;
	}
	__u64 t0 = slot_ts(s0), t1 = slot_ts(s1);
	struct flow_val *v;
	__u64 old;
	/* The same key first, in either slot: otherwise a retry would take
	 * the other slot and leave its first sending to time out. */
	int m0 = t0 > 1 && s0->fp == fp;
	if (m0 || (t1 > 1 && s1->fp == fp)) {
		v = m0 ? s0 : s1;
		old = m0 ? t0 : t1;
		/* The same query again on the same socket and ID (a stub
		 * resolver's retry): the earlier one timed out if it is past
		 * the timeout, and the retry's latency counts from now. The
		 * slot is this CPU's only if it is unchanged. */
		if (__sync_val_compare_and_swap(&v->ts, old, now) != old) {
			stat(STAT_NOT_TRACKED);
			return 1;
		}
		if (now > old && now - old > timeout_ns)
			count_timeout(key);
		else
			stat(STAT_RETRANSMITTED);
		return 1;
	}
	/* An owner at its quota may only take back its own expired slot. */
	__s64 have = owner_load(key);
	int full = have >= owner_quota;
	int r0 = slot_rank(s0, t0, now, key, have, full);
	int r1 = slot_rank(s1, t1, now, key, have, full);
	if (r0 == 0 && r1 == 0) {
		if (full) {
			count(&refused, &key, 1);
			stat(STAT_REFUSED);
		} else {
			stat(STAT_NOT_TRACKED);
		}
		return 1;
	}
	/* The better slot; of two as good, the older query's. */
	if (r0 > r1 || (r0 == r1 && t0 <= t1)) {
		v = s0;
		old = t0;
	} else {
		v = s1;
		old = t1;
	}
	if (__sync_val_compare_and_swap(&v->ts, old, 1) != old) {
		stat(STAT_NOT_TRACKED);
		return 1;
	}
	if (old) {
		/* Another query held the slot: past the timeout it is a
		 * timeout, as the sweep would have counted it; else it is
		 * evicted. Its key is stable: this CPU owns the slot. */
		__u64 was = v->owner;
		owner_add(was, -1);
		if (now > old && now - old > timeout_ns)
			count_timeout(was);
		else
			stat(STAT_EVICTED);
	}
	v->fp = fp;
	v->owner = key;
	v->name = nh;
	owner_add(key, 1);
	/* Publish: an atomic exchange orders the writes above before it
	 * (a plain store would on x86, not on arm64). */
	__sync_lock_test_and_set(&v->ts, now);
	stat(STAT_TRACKED);
	return 1;
}

/* answer matches an answer (source port a DNS port, p parsed) with the
 * query in flight under key. quiet: an answer that matches nothing is not
 * counted as unmatched (TC's look for the host's own queries, which most
 * answers crossing an interface are not). */
static __always_inline int answer(struct __sk_buff *skb, struct pkt *p, __u64 key, const int at, const int quiet)
{
	struct dnshdr h;
	int err = dns_header(skb, p, &h);
	if (err) {
		if (err < 0 && !quiet)
			stat(STAT_MALFORMED);
		return 1;
	}
	__u16 flags = bpf_ntohs(h.flags);
	if (!(flags & 0x8000)) {
		if (!quiet)
			stat(STAT_MALFORMED);
		return 1;
	}
	/* The query's key had the client as source: swap. */
	struct flow_key k = {
		.owner = key,
		.id = h.id,
		.lport = p->key.rport,
		.rport = p->key.lport,
		.family = p->key.family,
		.proto = p->key.proto,
	};
	if (at == AT_CGROUP && ignored(k.owner))
		return 1;
	__builtin_memcpy(k.laddr, p->key.raddr, 16);
	__builtin_memcpy(k.raddr, p->key.laddr, 16);
	__u64 fp = flow_hash(&k);
	__u32 idx = flow_bucket(fp);
	struct flow_val *v = bpf_map_lookup_elem(&inflight, &idx);
	if (!v) {
		if (!quiet)
			stat(STAT_UNMATCHED);
		return 1;
	}
	__u64 ts = slot_ts(v);
	if (ts <= 1 || v->fp != fp) {
		idx++;
		v = bpf_map_lookup_elem(&inflight, &idx);
		if (!v) {
			if (!quiet)
				stat(STAT_UNMATCHED);
			return 1;
		}
		ts = slot_ts(v);
		if (ts <= 1 || v->fp != fp) {
			if (!quiet)
				stat(STAT_UNMATCHED);
			return 1;
		}
	}
	__u64 d = bpf_ktime_get_ns() - ts;
	__u64 nh = v->name;
	/* Whoever zeroes ts owns the entry: this answer, a query that
	 * displaces it, or the sweep. Unchanged ts: the name read above is
	 * this query's. */
	if (__sync_val_compare_and_swap(&v->ts, ts, 0) != ts) {
		stat(STAT_UNMATCHED);
		return 1;
	}
	owner_add(k.owner, -1);
	if (d > timeout_ns) {
		stat(STAT_LATE);
		count_timeout(k.owner);
		return 1;
	}
	stat(STAT_ANSWERED);
	__u16 rcode = flags & 0xf;
	if (top_names && nh && rcode == 3) {
		__u64 *n = bpf_map_lookup_elem(&name_nxdomain, &nh);
		if (n) {
			__sync_fetch_and_add(n, 1);
		} else {
			__u64 one = 1;
			bpf_map_update_elem(&name_nxdomain, &nh, &one, BPF_NOEXIST);
		}
	}
	struct ans_val *a = bpf_map_lookup_elem(&answers, &k.owner);
	if (!a) {
		struct ans_val zero = {};
		long err = bpf_map_update_elem(&answers, &k.owner, &zero, BPF_NOEXIST);
		/* -EEXIST: another CPU inserted it first. */
		if (err && err != -NETSONDE_EEXIST) {
			stat(STAT_LOST);
			return 1;
		}
		a = bpf_map_lookup_elem(&answers, &k.owner);
		if (!a)
			return 1;
	}
	/* Per-CPU value: no other CPU writes it. */
	a->rcode[rcode & 15] += 1;
	__u32 b = bucket_of(d);
	if (b < NBUCKETS)
		a->bucket[b] += 1;
	a->sum += d;
	return 1;
}

/* The cgroup_skb programs: egress of a socket with a DNS destination port
 * is a query, ingress with a DNS source port an answer, keyed by the
 * socket's network namespace. */
static __always_inline int egress(struct __sk_buff *skb, const int cast)
{
	__u16 dport;
	if (!maybe_dns(skb, PORT_DST, 0, &dport))
		return 1;
	struct pkt p = {};
	if (parse(skb, &p, 0) || !dns_port(p.dport))
		return 1;
	return query(skb, &p, sock_netns(skb, cast), AT_CGROUP);
}

static __always_inline int ingress(struct __sk_buff *skb, const int cast)
{
	__u16 dport;
	if (!maybe_dns(skb, PORT_SRC, 0, &dport))
		return 1;
	struct pkt p = {};
	if (parse(skb, &p, 0) || !dns_port(p.sport))
		return 1;
	return answer(skb, &p, sock_netns(skb, cast), AT_CGROUP, 0);
}

/* Two forms of each program, by how the socket's namespace is read: with
 * bpf_rdonly_cast (6.2+, plain loads) or through bpf_probe_read_kernel
 * (older kernels). The loader tries them in that order. */
SEC("cgroup_skb/egress")
int dns_egress(struct __sk_buff *skb)
{
	return egress(skb, 1);
}

SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	return ingress(skb, 1);
}

SEC("cgroup_skb/egress")
int dns_egress_read(struct __sk_buff *skb)
{
	return egress(skb, 0);
}

SEC("cgroup_skb/ingress")
int dns_ingress_read(struct __sk_buff *skb)
{
	return ingress(skb, 0);
}

/* The TC programs, on every interface of the node's namespace (TCX, or a
 * clsact filter before 6.6). User space marks in ifaces what each
 * interface is:
 *
 * IFACE_POD: the host side of a veth whose peer is in another namespace,
 * a pod's. What it receives (ingress) left the pod: a query there is the
 * pod's, keyed by the interface. What it sends (egress) goes to the pod: an
 * answer there closes the pod's query. Pod to pod on one node, the query
 * also leaves through the resolver pod's veth and the answer comes in
 * through it, where neither is looked at in that role (a query going into
 * a pod, an answer coming out of one): each is counted once.
 *
 * The host's own sockets (node processes, hostNetwork pods) have no veth:
 * their query is the one a socket of this namespace sends (skb->sk set at
 * egress; a forwarded packet has none, since crossing into this namespace
 * orphaned it), keyed 0, and its answer the one that comes in on any
 * interface and matches such a query (the lookup is all it costs an answer
 * to somebody else). IFACE_ENSLAVED: a port of a bridge, bond, team or
 * VRF, whose egress sees the host's packets its master's egress has
 * already seen; a VLAN device's packets come to its lower device tagged,
 * in the data (not IP to the parser) or in skb->vlan_present. */
#define IFACE_POD 1
#define IFACE_ENSLAVED 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);   /* ifindex */
	__type(value, __u32); /* IFACE_* */
} ifaces SEC(".maps");

static __always_inline __u32 iface_flags(struct __sk_buff *skb)
{
	__u32 idx = skb->ifindex;
	__u32 *f = bpf_map_lookup_elem(&ifaces, &idx);
	return f ? *f : 0;
}

/* TC_NEXT: the packet goes on as if no program were there (TCX_NEXT for
 * TCX, TC_ACT_UNSPEC for a clsact filter: both -1). */
#define TC_NEXT -1

/* host_ports: when a socket of the node last sent a query from each
 * local port. Most answers crossing an interface's ingress are not the
 * node's (a resolver pod's answers to other pods leave through its veth's
 * ingress): only one to a port that sent a query within the timeout is
 * looked up in the in-flight table. A port's slot is only ever moved
 * forward, so a query in flight is never passed over; a stale slot costs
 * a lookup, nothing else. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} host_ports SEC(".maps");

static __always_inline int tc_ingress(struct __sk_buff *skb, const __u32 l2)
{
	__u16 dport = 0;
	int m = maybe_dns(skb, PORT_SRC | PORT_DST, l2, &dport);
	if (!m)
		return TC_NEXT;
	/* An answer, the node's only if one of its sockets asked lately. */
	if (m == PORT_SRC) {
		__u32 idx = dport;
		__u64 *ts = bpf_map_lookup_elem(&host_ports, &idx);
		if (!ts || bpf_ktime_get_ns() - *ts > timeout_ns)
			return TC_NEXT;
	}
	__u32 flags = 0;
	if (m & PORT_DST) {
		/* A query, a pod's if it leaves one. */
		flags = iface_flags(skb);
		if (!(flags & IFACE_POD) && !(m & PORT_SRC))
			return TC_NEXT;
	}
	struct pkt p = {};
	if (parse(skb, &p, l2))
		return TC_NEXT;
	if (dns_port(p.dport)) {
		if (flags & IFACE_POD)
			query(skb, &p, skb->ifindex, AT_TC);
	} else if (dns_port(p.sport)) {
		answer(skb, &p, 0, AT_TC, 1);
	}
	return TC_NEXT;
}

static __always_inline int tc_egress(struct __sk_buff *skb, const __u32 l2)
{
	__u16 dport = 0;
	int m = maybe_dns(skb, PORT_SRC | PORT_DST, l2, &dport);
	if (!m)
		return TC_NEXT;
	/* A query going out is the node's only from a socket of its own: a
	 * forwarded one (into a resolver pod) is done with here. */
	if (m == PORT_DST && !skb->sk)
		return TC_NEXT;
	struct pkt p = {};
	if (parse(skb, &p, l2))
		return TC_NEXT;
	if (dns_port(p.dport)) {
		if (skb->sk && !skb->vlan_present && !(iface_flags(skb) & IFACE_ENSLAVED)) {
			__u32 idx = p.sport;
			__u64 *ts = bpf_map_lookup_elem(&host_ports, &idx);
			if (ts)
				*ts = bpf_ktime_get_ns();
			query(skb, &p, 0, AT_TC);
		}
	} else if (dns_port(p.sport)) {
		if (iface_flags(skb) & IFACE_POD)
			answer(skb, &p, skb->ifindex, AT_TC, 0);
	}
	return TC_NEXT;
}

/* Devices with an Ethernet header (veth, the uplinks, bridges, lo) and
 * without one (wireguard, tun, ipip): where the network header starts. */
SEC("tc")
int dns_tc_ingress(struct __sk_buff *skb)
{
	return tc_ingress(skb, ETH_HLEN);
}

SEC("tc")
int dns_tc_egress(struct __sk_buff *skb)
{
	return tc_egress(skb, ETH_HLEN);
}

SEC("tc")
int dns_tc_ingress_l3(struct __sk_buff *skb)
{
	return tc_ingress(skb, 0);
}

SEC("tc")
int dns_tc_egress_l3(struct __sk_buff *skb)
{
	return tc_egress(skb, 0);
}

/* Where a dropped packet's headers are. A flavour (the ___dns suffix is
 * ignored by CO-RE) rather than fields added to the shared header, whose
 * change would alter every other object's BTF. */
struct sk_buff___dns {
	unsigned char *head;
	__u16 network_header;
} __attribute__((preserve_access_index));

/* count_drop counts a dropped packet to or from a DNS port. head and nh
 * locate its network header; netns is where it was dropped. */
static __always_inline void count_drop(unsigned char *head, __u16 nh, __u16 proto, __u64 netns, __u32 reason)
{
	__u8 ip[20];
	__u32 l4;
	__u8 l4proto;
	if (proto == bpf_htons(ETH_P_IP)) {
		if (bpf_probe_read_kernel(ip, 20, head + nh))
			return;
		if ((ip[0] >> 4) != 4 || ((ip[6] & 0x1f) | ip[7]) != 0)
			return;
		l4 = (ip[0] & 0xf) * 4;
		l4proto = ip[9];
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if (bpf_probe_read_kernel(ip, 8, head + nh))
			return;
		l4 = 40;
		l4proto = ip[6];
	} else {
		return;
	}
	if (l4proto != IPPROTO_UDP && l4proto != IPPROTO_TCP)
		return;
	__be16 ports[2];
	if (bpf_probe_read_kernel(ports, 4, head + nh + l4))
		return;
	if (!dns_port(bpf_ntohs(ports[0])) && !dns_port(bpf_ntohs(ports[1])))
		return;
	if (ignored(netns))
		return;
	struct drop_key k = {.netns = netns, .reason = reason};
	count(&drops, &k, 1);
}

/* Not drops: SKB_NOT_DROPPED_YET and SKB_CONSUMED (see bpf/drops). */
#define FIRST_DROP_REASON 2

SEC("tp_btf/kfree_skb")
int BPF_PROG(dns_drop_btf, struct sk_buff *skb, void *location, unsigned int reason)
{
	if (reason < FIRST_DROP_REASON)
		return 0;
	struct net *net = 0;
	struct net_device *dev = skb->dev;
	struct sock *sk = skb->sk;
	/* The namespace the packet was dropped in, as the drops collector
	 * attributes it: the device's, else the socket's. */
	if (dev)
		net = dev->nd_net.net;
	else if (sk)
		net = sk->__sk_common.skc_net.net;
	struct sk_buff___dns *hs = (void *)skb;
	count_drop(hs->head, hs->network_header, skb->protocol, net ? net->net_cookie : 0, reason);
	return 0;
}

SEC("raw_tp/kfree_skb")
int BPF_PROG(dns_drop_raw, struct sk_buff *skb, void *location, unsigned int reason)
{
	if (reason < FIRST_DROP_REASON)
		return 0;
	__u64 netns = 0;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (dev) {
		netns = BPF_CORE_READ(dev, nd_net.net, net_cookie);
	} else {
		struct sock *sk = BPF_CORE_READ(skb, sk);
		if (sk)
			netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
	}
	struct sk_buff___dns *hs = (void *)skb;
	count_drop(BPF_CORE_READ(hs, head), BPF_CORE_READ(hs, network_header), BPF_CORE_READ(skb, protocol), netns,
	           reason);
	return 0;
}
