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

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct net_device {
	int ifindex;
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sock_common {
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

#endif
