// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Futex (metrics 6-8). No futex hook of its own: a futex wait is recognised
 * when the thread goes to sleep (sched_switch, orig_ax = futex family), and a
 * futex wake when the waker is in a futex syscall at sched_waking. This keeps
 * the sys_enter_futex tracepoint, and its host-wide cost, out of the picture.
 */
#include "holdup.bpf.h"

#define NR_FUTEX 202
#define NR_FUTEX_WAITV 449
#define NR_FUTEX_WAKE 454
#define NR_FUTEX_WAIT 455
#define NR_FUTEX_REQUEUE 456

#define FUTEX_CMD_MASK 0x7f /* ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) */

struct futex_waitv_user {
	__u64 val;
	__u64 uaddr;
	__u32 flags;
	__u32 reserved;
};

static __always_inline bool futex_op_waits(__u32 op)
{
	switch (op & FUTEX_CMD_MASK) {
	case 0:  /* FUTEX_WAIT */
	case 6:  /* FUTEX_LOCK_PI */
	case 9:  /* FUTEX_WAIT_BITSET */
	case 11: /* FUTEX_WAIT_REQUEUE_PI */
	case 13: /* FUTEX_LOCK_PI2 */
		return true;
	}
	return false;
}

__hidden __u32 futex_classify(struct task_struct *t, struct pt_regs *regs, long nr,
			      struct res_desc *desc)
{
	__u64 uaddr = regs->di;

	switch (nr) {
	case NR_FUTEX:
		if (!futex_op_waits(regs->si))
			return 0;
		break;
	case NR_FUTEX_WAIT:
		break;
	case NR_FUTEX_WAITV:
		/* first futex of the vector; user memory is readable only as current */
		if (t == bpf_get_current_task_btf()) {
			struct futex_waitv_user w = {};
			if (!bpf_probe_read_user(&w, sizeof(w), (void *)uaddr))
				uaddr = w.uaddr;
		}
		break;
	default:
		return 0;
	}
	desc->id1 = uaddr;
	desc->id2 = t->tgid;
	return WAIT_FUTEX;
}

/* Metric 8: the waker was in a futex call on the wakee's futex. */
__hidden void futex_note_wake(struct task_struct *waker, __u32 slot, __u64 wakee_uaddr,
			      __u32 wakee_tgid)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(waker);
	struct res_desc d = {};
	struct res_stats *r;
	__u32 tid = waker->pid;
	long nr;
	__u64 now;

	if (!regs)
		return;
	nr = regs->orig_ax;
	if (nr != NR_FUTEX && nr != NR_FUTEX_WAKE && nr != NR_FUTEX_REQUEUE)
		return;
	d.id1 = wakee_uaddr;
	d.id2 = wakee_tgid;
	r = res_stats_get(slot, tid, waker->tgid, RES_FUTEX_WAKE, &d);
	if (!r)
		return;
	__sync_fetch_and_add(&r->woken, 1);
	/*
	 * One futex-wake call may wake many threads back to back; count a new call
	 * when more than 2us passed since this waker's last wakeup on this futex.
	 * (wait_ns holds that timestamp for RES_FUTEX_WAKE records.)
	 */
	now = bpf_ktime_get_ns();
	if (now - r->wait_ns > 2000)
		__sync_fetch_and_add(&r->calls, 1);
	r->wait_ns = now;
}
