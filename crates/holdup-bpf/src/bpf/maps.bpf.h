/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The maps, defined once in sched.bpf.c (HOLDUP_OWNER) and declared extern in
 * every other object, and the small helpers that create and count entries.
 * Included by holdup.bpf.h after the value types.
 */
#ifndef __HOLDUP_MAPS_BPF_H
#define __HOLDUP_MAPS_BPF_H

#define MAX_THREADS 16384
#define MAX_RES 32768
#define MAX_WAKE 32768
#define MAX_CULPRITS 16384
#define MAX_DISK 8192
#define MAX_INFLIGHT_BIO 16384

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

/* Zeroed initial value for any map entry (values exceed the 512-byte stack). */
#define ZERO_LEN 2048
#ifdef HOLDUP_OWNER
const volatile char zero_value[ZERO_LEN] = {};
#else
extern const volatile char zero_value[ZERO_LEN];
#endif

static __always_inline void count_loss(__u32 kind)
{
	__u64 *v = bpf_map_lookup_elem(&loss, &kind);
	if (v)
		*v += 1; /* per-CPU: no atomics needed */
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

#endif /* __HOLDUP_MAPS_BPF_H */
