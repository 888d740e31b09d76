// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Per-window resource records (res_stats), shared by the scheduler hooks
 * (waits), futex (wakes issued, metric 8) and net (socket calls): a library
 * the subsystem files call without calling back into sched.bpf.c.
 */
#include "holdup.bpf.h"

__hidden struct res_stats *res_stats_get(__u32 slot, __u32 tid, __u32 tgid, __u32 kind,
					 const struct res_desc *desc)
{
	struct res_key key = {
		.slot = slot, .tid = tid, .kind = kind, .id1 = desc->id1, .id2 = desc->id2,
	};
	struct res_stats *r = bpf_map_lookup_elem(&res_stats, &key);
	if (r)
		return r;
	bpf_map_update_elem(&res_stats, &key, (void *)zero_value, BPF_NOEXIST);
	r = bpf_map_lookup_elem(&res_stats, &key);
	if (!r) {
		count_loss(LOSS_RES_MAP_FULL);
		return 0;
	}
	if (r->tgid == 0) {
		r->tgid = tgid;
		r->desc = *desc;
	}
	return r;
}
