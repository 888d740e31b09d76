// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Block IO (metric 16): per thread and disk, requests, bytes and latency from
 * the bio's queueing (in the submitter's context) to the request's completion.
 * Every submitter is counted, target or not, so user space can give each
 * thread's share of the disk and name the other heavy submitters.
 */
#include "holdup.bpf.h"

SEC("tp/block/block_bio_queue")
int handle_block_bio_queue(struct trace_event_raw_block_bio *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct bio_key key = { .dev = ctx->dev, .sector = ctx->sector };
	struct bio_info info = {};

	info.ts = bpf_ktime_get_ns();
	info.tid = t->pid;
	info.tgid = t->tgid;
	info.is_target = task_is_target(t);
	info.write = ctx->rwbs[0] == 'W' || (ctx->rwbs[0] == 'F' && ctx->rwbs[1] == 'W');
	bpf_get_current_comm(info.comm, TASK_COMM_LEN);
	if (bpf_map_update_elem(&bio_inflight, &key, &info, BPF_ANY))
		count_loss(LOSS_BIO_INFLIGHT_FULL);
	return 0;
}

SEC("tp/block/block_rq_complete")
int handle_block_rq_complete(struct trace_event_raw_block_rq_completion *ctx)
{
	struct bio_key key = { .dev = ctx->dev, .sector = ctx->sector };
	struct bio_info *info = bpf_map_lookup_elem(&bio_inflight, &key);
	__u64 now = bpf_ktime_get_ns();
	__u64 bytes = (__u64)ctx->nr_sector * 512;
	struct disk_io_key dk = { .slot = window_start & 1, .dev = ctx->dev };
	struct disk_io_stats *s;
	struct cpu_ctx *c = this_cpu_ctx();
	__u64 lat = 0;

	if (c)
		c->blk_done_ts = now; /* wake-ups that follow are this completion's */
	if (info) {
		dk.tid = info->tid;
		lat = now - info->ts;
	}
	s = lookup_or_init(&disk_stats, &dk, (void *)zero_value, LOSS_DISK_MAP_FULL);
	if (!s)
		goto out;
	if (s->requests == 0 && info) {
		s->tgid = info->tgid;
		s->is_target = info->is_target;
		__builtin_memcpy(s->comm, info->comm, TASK_COMM_LEN);
	}
	__sync_fetch_and_add(&s->requests, 1);
	__sync_fetch_and_add(&s->bytes, bytes);
	if (info && info->write)
		__sync_fetch_and_add(&s->write_bytes, bytes);
	if (info) {
		__u32 b = log2_bucket(lat);
		__sync_fetch_and_add(&s->lat_ns, lat);
		if (b < NR_BUCKETS)
			__sync_fetch_and_add(&s->hist[BOUNDED(b, 31)], 1);
	}
out:
	if (info)
		bpf_map_delete_elem(&bio_inflight, &key);
	return 0;
}
