/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types netsonde's BPF programs read, declared by hand with
 * preserve_access_index so that CO-RE relocates every field against the
 * running kernel's BTF. Only the fields we read are listed; their order and
 * offsets here do not matter.
 */
#ifndef NETSONDE_H
#define NETSONDE_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

/* net_cookie (5.12+, u64): a number the kernel gives each network
 * namespace once and never again, unlike ns.inum, which a new namespace
 * gets back as soon as the old one is freed. Every program keys by it; user
 * space reads the same number with getsockopt(SO_NETNS_COOKIE) on a socket
 * made inside the namespace. */
struct net {
	struct ns_common ns;
	__u64 net_cookie;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct net_device {
	int ifindex;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	char cb[48];
	__be16 protocol;
} __attribute__((preserve_access_index));

/* For ext4's sync tracepoints: the device a file lives on. */
struct super_block {
	__u32 s_dev; /* dev_t: major << 20 | minor */
} __attribute__((preserve_access_index));

struct dentry {
	struct super_block *d_sb;
} __attribute__((preserve_access_index));

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct inode {
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

/* Offsets of classic tracepoint fields, which move between kernel
 * versions: the loader reads them from the tracepoint's format file and
 * sets them before attaching; programs read records through them. */
#define TP_READ(ctx, off, var) bpf_probe_read_kernel(&(var), sizeof(var), (void *)(ctx) + (off))

char __license[] SEC("license") = "Dual BSD/GPL";

#define NETSONDE_EEXIST 17

/* counter_add adds by to the per-CPU counter of key in map, creating it
 * when absent. Per-CPU values: no other CPU writes this slot, so no atomic
 * is needed. Returns 0, or the error of a failed insert (the map is full).
 * Every netsonde program counts through this one helper. */
static __always_inline long counter_add(void *map, const void *key, __u64 by)
{
	__u64 *v = bpf_map_lookup_elem(map, key);
	if (v) {
		*v += by;
		return 0;
	}
	long err = bpf_map_update_elem(map, key, &by, BPF_NOEXIST);
	if (err == -NETSONDE_EEXIST) {
		/* Another CPU inserted the key between our lookup and insert. */
		v = bpf_map_lookup_elem(map, key);
		if (v)
			*v += by;
		return 0;
	}
	return err;
}

/* count_full adds one to slot of full, an object's per-CPU array of the
 * events each of its maps had no room for (netsonde_bpf_map_full_total):
 * an overflow is counted, never silent. */
static __always_inline void count_full(void *full, __u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(full, &slot);
	if (v)
		*v += 1;
}

/* NETSONDE_FULL_MAP(n) defines full: an object's per-CPU array of n slots
 * for count_full. */
#define NETSONDE_FULL_MAP(n)                             \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); \
		__uint(max_entries, n);                  \
		__type(key, __u32);                      \
		__type(value, __u64);                    \
	} full SEC(".maps")

/* NETSONDE_ONLY_NETNS defines the filter tests use to count only the
 * network namespaces they made (loader.Options.OnlyNetns, by cookie), so
 * that other traffic on the machine cannot change their exact counts:
 * netns_filter, a constant the loader sets (off, the verifier drops every
 * check), the only_netns set, and ignored(netns). */
#define NETSONDE_ONLY_NETNS                                                       \
	volatile const __u8 netns_filter;                                         \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_HASH);                                  \
		__uint(max_entries, 64);                                          \
		__type(key, __u64);                                               \
		__type(value, __u8);                                              \
	} only_netns SEC(".maps");                                                \
	static __always_inline int ignored(__u64 netns)                           \
	{                                                                         \
		return netns_filter && !bpf_map_lookup_elem(&only_netns, &netns); \
	}

#endif
