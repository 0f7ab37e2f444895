//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Times fsync/fdatasync of chosen processes (etcd by default) in the kernel
 * and buckets each duration in the kernel, with the bounds of netsonde's
 * fsync histograms: user space reads a few counters at scrape time.
 *
 * Hooks: ext4's own sync tracepoints (ext4:ext4_sync_file_enter/_exit, as
 * tp_btf, raw_tp or classic tracepoints), which fire only on fsyncs of
 * ext4 files. The syscall tracepoints would
 * time every filesystem, but enabling any sys_enter_* tracepoint sends every
 * thread on the node through the slow syscall path; they are a last resort
 * (the sys_* programs below), used only when asked for.
 */
#include "../include/netsonde.h"

#define COMM_LEN 16
/* 125, 250, 500 us; etcd's 1 ms doubling to 8.192 s with 10 ms inserted. */
#define NBOUNDS 18

struct comm_key {
	char comm[COMM_LEN];
};

struct hist_key {
	char comm[COMM_LEN];
	__u32 dev;    /* kernel dev_t: major << 20 | minor */
	__u32 bucket; /* index of the first bound >= duration; NBOUNDS = +Inf */
};

struct sum_key {
	char comm[COMM_LEN];
	__u32 dev;
	__u32 pad;
};

struct start {
	__u64 ts;
	__u32 dev;
	__u32 pad;
};

/* Filled by user space with the process names to trace. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct comm_key);
	__type(value, __u8);
} comms SEC(".maps");

/* In-flight syncs by thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct start);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct hist_key);
	__type(value, __u64);
} hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, struct sum_key);
	__type(value, __u64);
} sums SEC(".maps");

/* Events that found a map full (netsonde_bpf_map_full_total), by slot:
 * FULL_STARTS (a sync not timed), FULL_HIST and FULL_SUMS (a timed sync
 * not counted there). */
enum { FULL_STARTS = 0, FULL_HIST, FULL_SUMS, FULL_MAX };
NETSONDE_FULL_MAP(FULL_MAX);

/* Bounds in ns, set by user space before load from the same table the
 * active probe's histogram uses, so the two can never drift apart. */
volatile const __u64 bounds[NBOUNDS];

static __always_inline int traced(struct comm_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	bpf_get_current_comm(k->comm, sizeof(k->comm));
	return bpf_map_lookup_elem(&comms, k) != 0;
}

static __always_inline void begin(__u32 dev)
{
	struct comm_key k;
	if (!traced(&k))
		return;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start s = {.ts = bpf_ktime_get_ns(), .dev = dev};
	if (bpf_map_update_elem(&starts, &tid, &s, BPF_ANY))
		count_full(&full, FULL_STARTS);
}

static __always_inline void end(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	if (!s)
		return;
	__u64 d = bpf_ktime_get_ns() - s->ts;
	struct hist_key hk = {.dev = s->dev, .bucket = NBOUNDS};
	bpf_map_delete_elem(&starts, &tid);
	bpf_get_current_comm(hk.comm, sizeof(hk.comm));
#pragma unroll
	for (int i = 0; i < NBOUNDS; i++) {
		if (d <= bounds[i]) {
			hk.bucket = i;
			break;
		}
	}
	if (counter_add(&hist, &hk, 1))
		count_full(&full, FULL_HIST);
	struct sum_key sk = {.dev = hk.dev};
	__builtin_memcpy(sk.comm, hk.comm, COMM_LEN);
	if (counter_add(&sums, &sk, d))
		count_full(&full, FULL_SUMS);
}

/* ext4_sync_file_enter(struct file *file, int datasync): the device is the
 * file's superblock's, as the tracepoint itself records it. */
SEC("tp_btf/ext4_sync_file_enter")
int BPF_PROG(ext4_sync_enter_btf, struct file *file, int datasync)
{
	begin(BPF_CORE_READ(file, f_path.dentry, d_sb, s_dev));
	return 0;
}

SEC("tp_btf/ext4_sync_file_exit")
int BPF_PROG(ext4_sync_exit_btf, struct inode *inode, int ret)
{
	end();
	return 0;
}

SEC("raw_tp/ext4_sync_file_enter")
int BPF_PROG(ext4_sync_enter_raw, struct file *file, int datasync)
{
	begin(BPF_CORE_READ(file, f_path.dentry, d_sb, s_dev));
	return 0;
}

SEC("raw_tp/ext4_sync_file_exit")
int BPF_PROG(ext4_sync_exit_raw, struct inode *inode, int ret)
{
	end();
	return 0;
}

/* Classic tracepoints: dev is the record's first field (offset 8). */
SEC("tracepoint/ext4/ext4_sync_file_enter")
int ext4_sync_enter_tp(void *ctx)
{
	__u32 dev = 0;
	TP_READ(ctx, 8, dev);
	begin(dev);
	return 0;
}

SEC("tracepoint/ext4/ext4_sync_file_exit")
int ext4_sync_exit_tp(void *ctx)
{
	end();
	return 0;
}

/* Last resort, only on request: the syscalls themselves (any filesystem,
 * no device), whose tracepoints slow every syscall on the node. */
SEC("tracepoint/syscalls/sys_enter_fsync")
int sys_fsync_enter(void *ctx)
{
	begin(0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_fdatasync")
int sys_fdatasync_enter(void *ctx)
{
	begin(0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_fsync")
int sys_fsync_exit(void *ctx)
{
	end();
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_fdatasync")
int sys_fdatasync_exit(void *ctx)
{
	end();
	return 0;
}
