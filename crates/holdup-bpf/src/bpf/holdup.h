/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types shared between holdup's BPF programs and its Rust collector.
 *
 * This header is the single definition of every struct that crosses the
 * kernel/user boundary. The Rust side does not redeclare them: libbpf-cargo
 * generates them from the BTF of the linked object (see the type anchors in
 * sched.bpf.c), so a field added here shows up in Rust at the next build.
 *
 * Plain C types only (no vmlinux.h types) so that the layout is obvious.
 */
#ifndef __HOLDUP_H
#define __HOLDUP_H

#define TASK_COMM_LEN 16
#define NR_BUCKETS 32 /* log2 buckets of microseconds: [2^i, 2^(i+1)) us */
#define NAME_LEN 32   /* file name (dentry) kept for file resources */
#define RQ_RING 8     /* per-CPU history of who ran, for "who ran instead" */

/* Scheduling state of a target thread (metrics 1-5). */
enum thread_state_kind {
	ST_ONCPU = 0,
	ST_RUNQ = 1,
	ST_IOWAIT = 2,
	ST_DSLEEP = 3,
	ST_SLEEP = 4,
	NR_STATES = 5,
	ST_UNKNOWN = 6, /* never seen switching: nothing is accounted */
	ST_DEAD = 7,
};

/* What a blocked thread waits on, from the syscall it sleeps in. */
enum wait_kind {
	WAIT_NONE = 0,    /* not in a syscall, or a syscall holdup does not classify */
	WAIT_FUTEX = 1,   /* metrics 6-7 */
	WAIT_FILE_READ = 2,  /* metric 9 */
	WAIT_FILE_WRITE = 3, /* metric 10 (write family, fsync, fdatasync) */
	WAIT_SOCK_RECV = 4,  /* metric 11 */
	WAIT_SOCK_SEND = 5,  /* metric 12 */
	WAIT_ACCEPT = 6,     /* metric 13 */
	WAIT_CONNECT = 7,    /* metric 13 */
	WAIT_MUX = 8,        /* metric 14 */
	WAIT_OTHER = 9,      /* other syscall (nanosleep, wait4, ...) */
	NR_WAIT_KINDS = 10,
};

/* Resource records that are not waits. */
enum res_kind_extra {
	RES_FUTEX_WAKE = 16, /* metric 8: wakes issued per futex by a waker */
	RES_SOCK_IO = 17,    /* bytes/calls per socket from sock_*_length */
};

/* How a wait ended (metric 15, and "who woke me" for metric 5). */
enum wake_cause {
	CAUSE_THREAD = 0, /* a task woke it from process context */
	CAUSE_SOCKET = 1, /* data arrived on a socket (sk_data_ready just before) */
	CAUSE_KERNEL = 2, /* interrupt / timer / idle context: no task to blame */
};

/* Description of a socket: 4-tuple, addresses in network byte order. */
struct sock_desc {
	__u16 family; /* AF_INET 2, AF_INET6 10, AF_UNIX 1 */
	__u16 protocol;
	__u16 sport; /* host byte order */
	__u16 dport; /* host byte order */
	__u8 saddr[16];
	__u8 daddr[16];
};

/* What a wait is on: enough to name the resource in user space. */
struct res_desc {
	__u64 id1; /* futex: uaddr; shared futex: shared_futex_id(); file: inode;
		    * socket: sock pointer; mux: epoll file */
	__u64 id2; /* futex: tgid (0: a shared futex); file: device; socket: inode */
	__u32 file_mode; /* S_IFMT bits of the inode */
	__u32 dev;       /* shared futex: kernel dev_t of the backing inode */
	__u64 ino;       /* shared futex: backing inode */
	__u64 offset;    /* shared futex: byte offset of the word in the backing object */
	struct sock_desc sock;
	char name[NAME_LEN];
};

/* Per-window key: slot is the window parity (double buffering). */
struct thread_key {
	__u32 slot;
	__u32 tid;
};

/* Metrics 1-5 and the per-kind wait totals of one thread in one window. */
struct thread_stats {
	__u32 tgid;
	__u32 tid;
	char comm[TASK_COMM_LEN];
	__u64 cgroup_id;
	__u64 state_ns[NR_STATES];
	__u64 wait_ns[NR_WAIT_KINDS];
	__u64 wait_cnt[NR_WAIT_KINDS];
	__u64 runq_cnt;      /* run-queue waits that ended in the window */
	__u64 preempted;     /* involuntary switches out */
	__u64 runq_hist[NR_BUCKETS];
	__u64 runq_unattributed_ns; /* run-queue time older than the per-CPU ring */
	__u64 exited;        /* 1 when the thread exited in this window */
};

/* Per-window, per-thread, per-resource wait (metrics 6, 7, 9-14, and 8). */
struct res_key {
	__u32 slot;
	__u32 tid;
	__u32 kind; /* enum wait_kind or enum res_kind_extra */
	__u32 _pad;
	__u64 id1;
	__u64 id2;
};

struct res_stats {
	__u32 tgid;
	__u32 _pad;
	__u64 wait_ns;
	__u64 waits;   /* blocking waits that started in the window */
	__u64 calls;   /* futex wake calls / socket calls */
	__u64 bytes;   /* socket bytes */
	__u64 woken;   /* futex wake: threads woken */
	__u64 hist[NR_BUCKETS];
	struct res_desc desc;
};

/* Who woke whom (metrics 5, 8, 15): one edge per waker, wakee, resource, cause. */
struct wake_key {
	__u32 slot;
	__u32 wakee_tid;
	__u32 waker_tid; /* 0 for CAUSE_KERNEL / CAUSE_SOCKET */
	__u16 wait_kind;
	__u16 cause;
	__u64 res_id;    /* the wakee's resource id1 */
	__u64 cause_id;  /* socket pointer for CAUSE_SOCKET */
};

struct wake_stats {
	__u32 wakee_tgid;
	__u32 waker_tgid;
	char waker_comm[TASK_COMM_LEN];
	__u64 count;
	__u64 sleep_ns; /* length of the sleeps these wakeups ended */
	struct sock_desc sock; /* for CAUSE_SOCKET */
};

/* Who ran instead (metric 2): CPU time taken from a waiting target thread. */
struct culprit_key {
	__u32 slot;
	__u32 victim_tid;
	__u32 culprit_tid;
	__u32 _pad;
};

struct culprit_stats {
	__u32 victim_tgid;
	__u32 culprit_tgid;
	char culprit_comm[TASK_COMM_LEN];
	__u64 culprit_cgroup;
	__u64 ns;
};

/* Block IO per thread and disk (metric 16); all submitters, to compute shares. */
struct disk_io_key {
	__u32 slot;
	__u32 tid;
	__u32 dev; /* kernel dev_t: major << 20 | minor */
	__u32 _pad;
};

struct disk_io_stats {
	__u32 tgid;
	__u32 is_target;
	char comm[TASK_COMM_LEN];
	__u64 requests;
	__u64 bytes;
	__u64 write_bytes;
	__u64 lat_ns;
	__u64 hist[NR_BUCKETS];
};

/* Loss counters (per CPU, monotonic; user space takes deltas). */
enum loss_kind {
	LOSS_THREAD_MAP_FULL = 0,
	LOSS_RES_MAP_FULL = 1,
	LOSS_WAKE_MAP_FULL = 2,
	LOSS_CULPRIT_MAP_FULL = 3,
	LOSS_DISK_MAP_FULL = 4,
	LOSS_STATE_MAP_FULL = 5, /* thread could not be tracked at all */
	LOSS_BIO_INFLIGHT_FULL = 6,
	LOSS_RINGBUF = 7,
	LOSS_UNKNOWN_STATE = 8, /* events for a target thread of unknown state */
	NR_LOSS = 9,
};

/* New-process notification for --comm targets (ring buffer). */
struct exec_event {
	__u32 tgid;
	__u32 ppid;
	char comm[TASK_COMM_LEN];
};

#endif /* __HOLDUP_H */
