/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel-side internals shared by the per-subsystem BPF objects.
 *
 * Each *.bpf.c is compiled on its own and the objects are statically linked
 * into one (libbpf linker). Maps and configuration are defined once, in
 * sched.bpf.c (HOLDUP_OWNER), and declared extern everywhere else. Functions
 * shared between objects are __hidden: libbpf then verifies them as static
 * subprograms, so they may take kernel pointers.
 */
#ifndef __HOLDUP_BPF_H
#define __HOLDUP_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "holdup.h"

#ifndef __hidden
#define __hidden __attribute__((visibility("hidden")))
#endif

#define MAX_THREADS 16384
#define MAX_RES 32768
#define MAX_WAKE 32768
#define MAX_CULPRITS 16384
#define MAX_DISK 8192
#define MAX_INFLIGHT_BIO 16384
#define TARGET_WORDS 65536 /* 2^22 tgid bits */

#define S_IFMT 00170000
#define S_IFSOCK 0140000

#define TASK_RUNNING_ 0x0
#define TASK_UNINTERRUPTIBLE_ 0x2
#define TASK_DEAD_ 0x80
#define TASK_NOLOAD_ 0x400
#define PF_KTHREAD_ 0x00200000

/*
 * Tracking state of one target thread (task storage; dies with the thread).
 * Its per-window totals accumulate here, not in a hash map: the hot path
 * then touches no hash table for them. The window iterator copies a closing
 * window's totals into the thread_stats map for user space (and a dying
 * thread copies its own).
 */
/*
 * The last shared-futex key a thread looked up: valid while its address space
 * saw no mmap write (mm_lock_seq unchanged), so a thread that keeps waiting on
 * one shared lock pays for bpf_find_vma once, not per wait.
 */
struct futex_key_cache {
	__u64 uaddr;
	__u64 mm;
	__u64 ino;
	__u64 offset;
	__u32 seq;
	__u32 dev;
};

/*
 * The current window's wait totals of the resource a thread last waited on.
 * A thread waits on one resource at a time and mostly on the same one again
 * (its epoll instance, its lock, its socket), so its waits add up here and
 * reach the res_stats hash map once, when it waits on something else or the
 * window is cut: the hot path touches no hash map for them.
 */
struct res_acc {
	__u32 slot;
	__u32 kind; /* enum wait_kind; WAIT_NONE: empty */
	__u64 wait_ns;
	__u64 waits;
	__u64 hist[NR_BUCKETS];
	struct res_desc desc;
};

struct thread_state {
	__u64 since;     /* start of the current state */
	__u64 acct;      /* time up to which this state is already accounted */
	__u32 state;     /* enum thread_state_kind */
	__u32 tgid;
	__u32 wait_kind; /* enum wait_kind, when asleep */
	__u32 _pad;
	struct res_desc res;
	struct futex_key_cache fkey;
	struct res_acc acc;
	struct thread_stats stats[2]; /* per window slot */
};

/* One stretch of CPU time on a CPU: who held it, for "who ran instead". */
struct run_seg {
	__u64 start;
	__u64 end;
	__u64 task; /* read (comm, cgroup) only when blamed: most segments never are */
	__u32 pid;
	__u32 tgid;
};

struct cpu_ring {
	__u64 cur_in; /* when the task now running on this CPU got it */
	__u32 head;
	__u32 _pad;
	struct run_seg segs[RQ_RING];
};

/*
 * Per-CPU context for naming what ended a wait. A wake-up that runs right
 * after sk_data_ready or a block completion on the same CPU, or inside an
 * hrtimer callback, comes from the kernel on behalf of that event, whatever
 * task `current` happens to be. (Hooking every irq/softirq entry would say
 * the same at a far higher cost.)
 */
struct cpu_ctx {
	__u64 data_ready_ts;
	__u64 data_ready_sk;
	__u32 data_ready_pid; /* `current` then: the wake-up it causes runs in the same context */
	__u32 _pad2;
	__u64 blk_done_ts;
	/* inside an hrtimer callback since (0: not); a time, not a depth, so an
	 * exit missed while attaching cannot leave the CPU marked for good */
	__u64 timer_ts;
};

/* An event this recent on the same CPU is what the wake-up is part of. */
#define SAME_EVENT_NS 50000
/* sk_data_ready -> ep_poll_callback / sock_def_readable -> try_to_wake_up is a
 * direct call chain: a few microseconds at most. */
#define DATA_READY_NS 10000

struct bio_key {
	__u32 dev;
	__u32 _pad;
	__u64 sector;
};

struct bio_info {
	__u64 ts;
	__u32 tid;
	__u32 tgid;
	__u32 is_target;
	__u32 write;
	char comm[TASK_COMM_LEN];
};

#ifdef HOLDUP_OWNER
#define HOLDUP_MAP(name) name SEC(".maps")
#else
#define HOLDUP_MAP(name) extern name SEC(".maps")
#endif

typedef struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} target_cgroups_t;

/* Per-task storage: the hot path finds a thread's state without hashing. */
typedef struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_state);
} thread_states_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_THREADS);
	__type(key, struct thread_key);
	__type(value, struct thread_stats);
} thread_stats_map_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_RES);
	__type(key, struct res_key);
	__type(value, struct res_stats);
} res_stats_map_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_WAKE);
	__type(key, struct wake_key);
	__type(value, struct wake_stats);
} wake_stats_map_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CULPRITS);
	__type(key, struct culprit_key);
	__type(value, struct culprit_stats);
} culprit_stats_map_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_DISK);
	__type(key, struct disk_io_key);
	__type(value, struct disk_io_stats);
} disk_stats_map_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_INFLIGHT_BIO);
	__type(key, struct bio_key);
	__type(value, struct bio_info);
} bio_inflight_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_ring);
} cpu_rings_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_ctx);
} cpu_ctxs_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_LOSS);
	__type(key, __u32);
	__type(value, __u64);
} loss_t;

typedef struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} exec_events_t;

HOLDUP_MAP(target_cgroups_t target_cgroups);
HOLDUP_MAP(thread_states_t thread_states);
HOLDUP_MAP(thread_stats_map_t thread_stats);
HOLDUP_MAP(res_stats_map_t res_stats);
HOLDUP_MAP(wake_stats_map_t wake_stats);
HOLDUP_MAP(culprit_stats_map_t culprit_stats);
HOLDUP_MAP(disk_stats_map_t disk_stats);
HOLDUP_MAP(bio_inflight_t bio_inflight);
HOLDUP_MAP(cpu_rings_t cpu_rings);
HOLDUP_MAP(cpu_ctxs_t cpu_ctxs);
HOLDUP_MAP(loss_t loss);
HOLDUP_MAP(exec_events_t exec_events);

/* Configuration, set by user space before load (rodata). */
#ifdef HOLDUP_OWNER
const volatile __u8 targ_all = 0;
const volatile __u8 targ_cgroup = 0;
const volatile __u8 targ_comm = 0;
const volatile __u8 follow_children = 1;
const volatile __u32 self_tgid = 0;
/* Start of the current window (CLOCK_MONOTONIC ns); its low bit is the slot. */
volatile __u64 window_start = 0;
/*
 * The target set: one bit per tgid, up to PID_MAX_LIMIT (2^22). Set by user
 * space (pid, command, comm targets), by fork for children of targets, and
 * by the window iterator for processes in a target cgroup. A plain load
 * rejects every other task before any helper call. Bits are never cleared
 * (as the tgid set they replace was not): a reused tgid stays traced.
 */
volatile __u64 target_bits[TARGET_WORDS] SEC(".data.targets");
/* Target threads asleep on a socket, epoll or poll: sk_data_ready only matters then. */
volatile __s64 socket_waiters = 0;
#else
extern const volatile __u8 targ_all;
extern const volatile __u8 targ_cgroup;
extern const volatile __u8 targ_comm;
extern const volatile __u8 follow_children;
extern const volatile __u32 self_tgid;
extern volatile __u64 window_start;
extern volatile __u64 target_bits[TARGET_WORDS];
extern volatile __s64 socket_waiters;
#endif

/* Waits that data arriving on a socket can end (metric 15). */
static __always_inline bool socket_wait(__u32 kind)
{
	return kind == WAIT_MUX || kind == WAIT_SOCK_RECV || kind == WAIT_ACCEPT;
}

/* Mask an index in a way clang cannot optimise away, so the verifier sees the bound. */
#define BOUNDED(v, mask)                                   \
	({                                                 \
		__u64 __b = (v);                           \
		asm volatile("%0 &= " #mask : "+r"(__b));  \
		__b;                                       \
	})

static __always_inline void count_loss(__u32 kind)
{
	__u64 *v = bpf_map_lookup_elem(&loss, &kind);
	if (v)
		*v += 1; /* per-CPU: no atomics needed */
}

static __always_inline __u32 log2_bucket(__u64 ns)
{
	__u64 us = ns / 1000;
	__u32 b = 0;
	/* bounded loop: at most NR_BUCKETS-1 shifts */
	for (int i = 0; i < NR_BUCKETS - 1; i++) {
		if (us < 2)
			break;
		us >>= 1;
		b++;
	}
	return b;
}

/* Look up a map entry, creating it zeroed (or from init) when absent. */
static __always_inline void *lookup_or_init(void *map, const void *key, const void *init,
					    __u32 loss_kind)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	/* EEXIST from a racing CPU is fine; E2BIG (map full) shows as a failed lookup */
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, key);
	if (!v)
		count_loss(loss_kind);
	return v;
}

/* Recent per-CPU events that explain a wake-up better than `current` does. */
static __always_inline struct cpu_ctx *this_cpu_ctx(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&cpu_ctxs, &zero);
}

/*
 * Task pointers handed to tp_btf/iter programs (and from
 * bpf_get_current_task_btf) are trusted BTF pointers: plain field reads
 * compile to inline loads, where BPF_CORE_READ would call a helper per field.
 * Hot paths read them directly; pointers fished out of maps or memory use
 * BPF_CORE_READ.
 */
static __always_inline __u64 task_cgroup_id(struct task_struct *t)
{
	return t->cgroups->dfl_cgrp->kn->id;
}

/* Is this tgid in the target set? */
static __always_inline bool tgid_is_target(__u32 tgid)
{
	return target_bits[BOUNDED(tgid >> 6, 0xffff)] & (1ULL << (tgid & 63));
}

static __always_inline void set_target_tgid(__u32 tgid)
{
	__sync_fetch_and_or(&target_bits[BOUNDED(tgid >> 6, 0xffff)], 1ULL << (tgid & 63));
}

/* Is this task one of the traced ones? The first check of every handler:
 * two loads, no helper call. */
static __always_inline bool task_is_target(struct task_struct *t)
{
	if (targ_all)
		return t->pid != 0 && t->tgid != self_tgid;
	return tgid_is_target(t->tgid);
}

/* Cgroup targets: is the task in one of the target cgroups? (window iterator, fork) */
static __always_inline bool task_in_target_cgroup(struct task_struct *t)
{
	__u64 cg = task_cgroup_id(t);
	return bpf_map_lookup_elem(&target_cgroups, &cg) != 0;
}

/* The tracking state of a target thread, or NULL. */
static __always_inline struct thread_state *state_of(struct task_struct *t)
{
	return bpf_task_storage_get(&thread_states, t, 0, 0);
}

/* Zeroed initial value for any map entry (values exceed the 512-byte stack). */
#define ZERO_LEN 2048
#ifdef HOLDUP_OWNER
const volatile char zero_value[ZERO_LEN] = {};
#else
extern const volatile char zero_value[ZERO_LEN];
#endif

/* --- cross-object functions (defined in the named file) --- */

/* sched.bpf.c: per-window entries */
__hidden struct thread_stats *thread_stats_get(struct thread_state *ts, __u32 slot, __u32 tid,
					       struct task_struct *t);
__hidden struct res_stats *res_stats_get(__u32 slot, __u32 tid, __u32 tgid, __u32 kind,
					 const struct res_desc *desc);

/* vfs.bpf.c: resolve a file descriptor of a task to its struct file */
__hidden struct file *vfs_fd_file(struct task_struct *t, __u64 fd);
/* vfs.bpf.c: describe a non-socket file; returns its S_IFMT mode */
__hidden __u32 vfs_describe(struct file *f, struct res_desc *desc);

/* net.bpf.c: fill desc from a struct sock */
__hidden void net_describe_sock(struct sock *sk, struct res_desc *desc);
/* net.bpf.c: syscall -> socket wait kind; 0 when not a socket syscall */
__hidden __u32 net_classify(struct task_struct *t, long nr, __u64 fd, struct res_desc *desc);

/* futex.bpf.c: is this a futex wait? fills desc: (uaddr, tgid), or for a
 * shared futex in shared memory (shared_futex_id, 0) and dev/ino/offset */
__hidden __u32 futex_classify(struct task_struct *t, struct pt_regs *regs, long nr,
			      struct res_desc *desc, struct futex_key_cache *cache);
/* futex.bpf.c: waker side of a wakeup (metric 8), on the wakee's futex */
__hidden void futex_note_wake(struct task_struct *waker, __u32 slot,
			      const struct res_desc *wakee_res);

/* mux.bpf.c: epoll/poll/select wait; fills desc */
__hidden __u32 mux_classify(struct task_struct *t, long nr, __u64 fd, struct res_desc *desc);
/* mux.bpf.c: the socket on an epoll instance's ready list (what woke its waiter), or 0 */
__hidden __u64 mux_epoll_ready_sock(__u64 epfile);
/* mux.bpf.c: consume this CPU's recent sk_data_ready, if any: the socket pointer */
__hidden __u64 mux_take_data_ready(__u64 now, __u32 waker_pid);

#endif /* __HOLDUP_BPF_H */
