//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TCP connection outcomes per network namespace, counted in the kernel.
 *
 * Active opens are followed on sock:inet_sock_set_state: CLOSE -> SYN_SENT
 * records the start in an LRU hash keyed by the socket; SYN_SENT ->
 * ESTABLISHED counts "established" and its duration; SYN_SENT -> CLOSE
 * counts refused, timeout, error or no_port (no local port free) from the socket's error and from
 * whether sock:inet_sk_error_report said an error (an ICMP unreachable)
 * came in while it was in SYN_SENT. Every close of
 * a connection that got past the handshake samples its smoothed RTT once.
 * tcp:tcp_send_reset and tcp:tcp_receive_reset count resets. Nothing per
 * connection reaches user space: everything lands in one per-CPU value per
 * namespace, read at scrape time.
 */
#include "../include/netsonde.h"

/* The fields of struct sock and struct tcp_sock only this collector reads,
 * as CO-RE flavours (the ___tc suffix is dropped when relocating against
 * the kernel's types), so the shared header, and with it every other
 * object's BTF, stays as it is. */
struct sock___tc {
	__u16 sk_protocol;
	int sk_err;
	int sk_err_soft;
} __attribute__((preserve_access_index));

/* srtt_us is the smoothed RTT in microseconds, shifted left by 3;
 * segs_out counts segments sent (the SYN included). */
struct tcp_sock {
	__u32 srtt_us;
	__u32 segs_out;
} __attribute__((preserve_access_index));

/* inet_sport is the local port once one is bound or allocated. */
struct inet_sock___tc {
	__be16 inet_sport;
} __attribute__((preserve_access_index));

#define SK(sk) ((const struct sock___tc *)(sk))

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define IPPROTO_TCP_ 6

#define ECONNREFUSED_ 111
#define ETIMEDOUT_ 110

/* Results, the index of connects[]. */
#define R_ESTABLISHED 0
#define R_REFUSED 1
#define R_TIMEOUT 2
#define R_ERROR 3
#define R_NO_PORT 4
#define RESULTS 5

/* Bucket edges, kept in step with collectors/tcpconnect. The connect
 * duration has edges at 0.1 s and at the SYN retransmit steps (1 s, 3 s). */
#define DUR_EDGES 6
#define SRTT_EDGES 9

struct ns_stats {
	__u64 connects[RESULTS];
	__u64 dur_buckets[DUR_EDGES + 1]; /* not cumulative; last is +Inf */
	__u64 dur_sum_ns;
	__u64 resets[2]; /* 0 sent, 1 received */
	__u64 srtt_buckets[SRTT_EDGES + 1];
	__u64 srtt_sum_us;
};

/* Keyed by the namespace's cookie: one entry per pod on the node. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct ns_stats);
} stats SEC(".maps");

struct inflight_conn {
	__u64 start_ns;
	__u64 netns;    /* for the in-flight gauge per pod */
	__u32 answered; /* an error was reported in SYN_SENT: ICMP answered */
	__u32 pad;
};

/* Connections in SYN_SENT, by socket address. LRU: a socket that somehow
 * never leaves SYN_SENT through this tracepoint cannot fill the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct inflight_conn);
} inflight SEC(".maps");

static const struct ns_stats zero;

/* Namespace 0 is the overflow slot, created by the loader: when the map
 * is full, counts go there rather than nowhere. */
static const __u64 overflow_key = 0;

/* Events that found a map full (netsonde_bpf_map_full_total): FULL_STATS,
 * counted in the overflow slot instead of their namespace's; FULL_INFLIGHT,
 * a connect whose entry was pushed out of the LRU table (or never got in)
 * before it ended, so its outcome is not counted. A connect already in
 * flight when the agent started also ends with no entry, and counts there
 * too: at most the connects in flight at that moment. */
enum { FULL_STATS = 0, FULL_INFLIGHT, FULL_MAX };
NETSONDE_FULL_MAP(FULL_MAX);

NETSONDE_ONLY_NETNS

static __always_inline struct ns_stats *stats_of(__u64 netns)
{
	if (ignored(netns))
		return 0;
	struct ns_stats *s = bpf_map_lookup_elem(&stats, &netns);
	if (s)
		return s;
	/* EEXIST when another CPU inserted it first: the lookup finds it. */
	bpf_map_update_elem(&stats, &netns, &zero, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&stats, &netns);
	if (s)
		return s;
	count_full(&full, FULL_STATS);
	return bpf_map_lookup_elem(&stats, &overflow_key);
}

static __always_inline __u64 netns_of(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
}

static __always_inline __u32 dur_bucket(__u64 ns)
{
	if (ns <= 1000000ULL)
		return 0; /* 1 ms */
	if (ns <= 10000000ULL)
		return 1; /* 10 ms */
	if (ns <= 100000000ULL)
		return 2; /* 100 ms */
	if (ns <= 1000000000ULL)
		return 3; /* 1 s */
	if (ns <= 3000000000ULL)
		return 4; /* 3 s */
	if (ns <= 10000000000ULL)
		return 5; /* 10 s */
	return 6;
}

static __always_inline __u32 srtt_bucket(__u64 us)
{
	if (us <= 100)
		return 0;
	if (us <= 500)
		return 1;
	if (us <= 1000)
		return 2;
	if (us <= 5000)
		return 3;
	if (us <= 10000)
		return 4;
	if (us <= 50000)
		return 5;
	if (us <= 100000)
		return 6;
	if (us <= 500000)
		return 7;
	if (us <= 1000000)
		return 8;
	return 9;
}

/* result classifies the end of a SYN_SENT socket that did not get
 * established. An RST sets ECONNREFUSED before the state changes:
 * refused. The kernel giving up sets ETIMEDOUT first, or the soft error an
 * ICMP left (an answer of sorts: error). An ICMP unreachable that ends
 * SYN_SENT is reported to the socket (sock:inet_sk_error_report) before
 * the state changes, but on 6.18 its errno is not yet in sk_err when the
 * state changes, hence the answered flag: error. The application closing
 * the socket first leaves no error at all: nothing ever answered, timeout.
 * A socket that never sent its SYN is no_port when tcp_v4_connect found
 * no local port for it, else an error too, though it has no error set. */
static __always_inline __u32 result(const struct sock *sk, int answered)
{
	int err = BPF_CORE_READ(SK(sk), sk_err);
	int soft = BPF_CORE_READ(SK(sk), sk_err_soft);
	if (err == ECONNREFUSED_)
		return R_REFUSED;
	if (BPF_CORE_READ((const struct tcp_sock *)sk, segs_out) == 0) {
		/* No SYN sent. tcp_v4_connect and tcp_v6_connect enter
		 * SYN_SENT, then ask inet_hash_connect for a local port; when
		 * none is free (EADDRNOTAVAIL) they close the socket with no
		 * port ever set. Any later failure (a route, tcp_connect) comes
		 * after the port was set, and a socket bound before connect
		 * has its port: both stay error. inet_sport, not inet_num,
		 * because closing releases the port (inet_num back to 0)
		 * before this tracepoint fires. */
		if (BPF_CORE_READ((const struct inet_sock___tc *)sk, inet_sport) == 0)
			return R_NO_PORT;
		return R_ERROR;
	}
	if ((err == ETIMEDOUT_ || err == 0) && soft == 0 && !answered)
		return R_TIMEOUT;
	return R_ERROR;
}

static __always_inline void set_state(const struct sock *sk, int oldstate, int newstate)
{
	if (BPF_CORE_READ(SK(sk), sk_protocol) != IPPROTO_TCP_)
		return;
	if (netns_filter && ignored(netns_of(sk)))
		return;
	__u64 key = (__u64)sk;

	if (newstate == TCP_SYN_SENT) {
		struct inflight_conn v = {.start_ns = bpf_ktime_get_ns(), .netns = netns_of(sk)};
		bpf_map_update_elem(&inflight, &key, &v, BPF_ANY);
		return;
	}
	/* A simultaneous open goes SYN_SENT -> SYN_RECV -> ESTABLISHED: the
	 * entry stays until it ends either way. Passive opens are other
	 * sockets, never in the map. */
	if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
		if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
			return;
		struct inflight_conn *f = bpf_map_lookup_elem(&inflight, &key);
		if (!f) {
			if (oldstate == TCP_SYN_SENT)
				count_full(&full, FULL_INFLIGHT);
			return;
		}
		__u64 start = f->start_ns;
		int answered = f->answered;
		bpf_map_delete_elem(&inflight, &key);
		struct ns_stats *s = stats_of(netns_of(sk));
		if (!s)
			return;
		if (newstate == TCP_CLOSE) {
			__u32 r = result(sk, answered);
			if (r < RESULTS)
				s->connects[r]++;
			return;
		}
		__u64 d = bpf_ktime_get_ns() - start;
		s->connects[R_ESTABLISHED]++;
		__u32 b = dur_bucket(d);
		if (b <= DUR_EDGES)
			s->dur_buckets[b]++;
		s->dur_sum_ns += d;
		return;
	}
	/* A connection that got past the handshake closes: its smoothed RTT,
	 * once. Listeners and never-answered sockets have none. */
	if (newstate == TCP_CLOSE && oldstate != TCP_LISTEN && oldstate != TCP_CLOSE) {
		__u32 srtt = BPF_CORE_READ((const struct tcp_sock *)sk, srtt_us) >> 3;
		if (!srtt)
			return;
		struct ns_stats *s = stats_of(netns_of(sk));
		if (!s)
			return;
		__u32 b = srtt_bucket(srtt);
		if (b <= SRTT_EDGES)
			s->srtt_buckets[b]++;
		s->srtt_sum_us += srtt;
	}
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_btf, const struct sock *sk, int oldstate, int newstate)
{
	set_state(sk, oldstate, newstate);
	return 0;
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(set_state_raw, const struct sock *sk, int oldstate, int newstate)
{
	set_state(sk, oldstate, newstate);
	return 0;
}

/* A reset sent for a segment that found no socket (a refused connect)
 * has no sk: the namespace is that of the device the segment came in by. */
static __always_inline void reset_sent(const struct sock *sk, const struct sk_buff *skb)
{
	__u64 netns = 0;
	if (sk)
		netns = netns_of(sk);
	else if (skb)
		netns = BPF_CORE_READ(skb, dev, nd_net.net, net_cookie);
	if (!netns)
		return;
	struct ns_stats *s = stats_of(netns);
	if (s)
		s->resets[0]++;
}

static __always_inline void reset_received(const struct sock *sk)
{
	struct ns_stats *s = stats_of(netns_of(sk));
	if (s)
		s->resets[1]++;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(send_reset_btf, const struct sock *sk, const struct sk_buff *skb)
{
	reset_sent(sk, skb);
	return 0;
}

SEC("raw_tp/tcp_send_reset")
int BPF_PROG(send_reset_raw, const struct sock *sk, const struct sk_buff *skb)
{
	reset_sent(sk, skb);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(receive_reset_btf, const struct sock *sk)
{
	reset_received(sk);
	return 0;
}

SEC("raw_tp/tcp_receive_reset")
int BPF_PROG(receive_reset_raw, const struct sock *sk)
{
	reset_received(sk);
	return 0;
}

/* An error reported to a socket still in SYN_SENT: something answered
 * the SYN with an error (an RST, already told apart by its errno, or an
 * ICMP unreachable). */
static __always_inline void error_report(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct inflight_conn *f = bpf_map_lookup_elem(&inflight, &key);
	if (f)
		f->answered = 1;
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(error_report_btf, const struct sock *sk)
{
	error_report(sk);
	return 0;
}

SEC("raw_tp/inet_sk_error_report")
int BPF_PROG(error_report_raw, const struct sock *sk)
{
	error_report(sk);
	return 0;
}
