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

#endif
