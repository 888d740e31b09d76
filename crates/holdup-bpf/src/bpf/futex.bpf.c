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

#define FUTEX_PRIVATE_FLAG 128 /* also FUTEX2_PRIVATE of futex_wait(2)/futex_waitv(2) */
#define VM_MAYSHARE_ 0x00000080
#define PAGE_SHIFT_ 12

/*
 * One u64 naming a shared futex (dev, ino, offset), the key of its res_stats
 * records and its wake edges' res_id. The same function, bit for bit, is
 * holdup_model::Resource::shared_futex_id: user space and the diagnosis
 * recompute it from a SharedFutex to join wake edges with waits.
 */
static __always_inline __u64 shared_futex_id(__u64 dev, __u64 ino, __u64 offset)
{
	__u64 x = ino * 0x9E3779B97F4A7C15ULL + offset;
	x ^= x >> 31;
	x = x * 0xBF58476D1CE4E5B9ULL + dev;
	x ^= x >> 29;
	x *= 0x94D049BB133111EBULL;
	x ^= x >> 32;
	return x;
}

struct vma_key_ctx {
	__u64 uaddr;
	__u64 ino;
	__u64 offset;
	__u32 dev;
	__u32 found;
};

static long vma_key_cb(struct task_struct *t, struct vm_area_struct *vma, struct vma_key_ctx *c)
{
	struct file *f = vma->vm_file;
	struct inode *ino;

	/*
	 * The kernel keys a shared futex in a shared mapping (file or shmem, which
	 * shared anonymous memory is) by inode + page offset. A private mapping's
	 * futex is keyed by the mm, like a private futex: leave it (tgid, uaddr).
	 */
	if (!f || !(vma->vm_flags & VM_MAYSHARE_))
		return 0;
	ino = BPF_CORE_READ(f, f_inode);
	if (!ino)
		return 0;
	c->ino = BPF_CORE_READ(ino, i_ino);
	c->dev = BPF_CORE_READ(ino, i_sb, s_dev);
	c->offset = (vma->vm_pgoff << PAGE_SHIFT_) + (c->uaddr - vma->vm_start);
	c->found = 1;
	return 0;
}

/* The address space's mmap write sequence (odd while write-locked), or 0
 * on kernels without it (then nothing is cached). */
static __always_inline __u32 mm_write_seq(struct mm_struct *mm)
{
	if (!bpf_core_field_exists(mm->mm_lock_seq))
		return 0;
	return BPF_CORE_READ(mm, mm_lock_seq.sequence);
}

/*
 * Key a futex wait as the kernel does: a private op by (tgid, uaddr); a
 * shared op (no FUTEX_PRIVATE_FLAG) on a shared mapping by its backing
 * object. Only shared ops pay for the VMA lookup, and only when the thread's
 * cached key is stale; when the lookup fails (the mm lock is contended) the
 * wait stays keyed by (tgid, uaddr).
 */
static __always_inline void futex_key(struct task_struct *t, __u64 uaddr, bool shared,
				      struct res_desc *desc, struct futex_key_cache *cache)
{
	struct vma_key_ctx c = { .uaddr = uaddr };
	struct mm_struct *mm;
	__u32 seq;

	desc->id1 = uaddr;
	desc->id2 = t->tgid;
	if (!shared)
		return;
	mm = t->mm;
	seq = mm ? mm_write_seq(mm) : 0;
	if (seq && !(seq & 1) && cache->uaddr == uaddr && cache->mm == (__u64)mm &&
	    cache->seq == seq) {
		c.dev = cache->dev;
		c.ino = cache->ino;
		c.offset = cache->offset;
		c.found = cache->ino != 0; /* inode 0 is never used: not in a shared mapping */
	} else {
		long rc = bpf_find_vma(t, uaddr, vma_key_cb, &c, 0);

		if (rc)
			c.found = 0;
		/* a busy mm lock (-EBUSY) is not remembered: the next wait retries;
		 * a private mapping is (ino stays 0) */
		cache->uaddr = rc == 0 || rc == -2 /* ENOENT */ ? uaddr : 0;
		cache->mm = (__u64)mm;
		cache->seq = seq;
		cache->dev = c.dev;
		cache->ino = c.ino;
		cache->offset = c.offset;
	}
	if (!c.found)
		return;
	desc->dev = c.dev;
	desc->ino = c.ino;
	desc->offset = c.offset;
	desc->id1 = shared_futex_id(c.dev, c.ino, c.offset);
	desc->id2 = 0;
}

__hidden __u32 futex_classify(struct task_struct *t, struct pt_regs *regs, long nr,
			      struct res_desc *desc, struct futex_key_cache *cache)
{
	__u64 uaddr = regs->di;
	bool shared;

	switch (nr) {
	case NR_FUTEX:
		if (!futex_op_waits(regs->si))
			return 0;
		shared = !(regs->si & FUTEX_PRIVATE_FLAG);
		break;
	case NR_FUTEX_WAIT: /* futex_wait(uaddr, val, mask, flags, ...) */
		shared = !(regs->r10 & FUTEX_PRIVATE_FLAG);
		break;
	case NR_FUTEX_WAITV:
		/* first futex of the vector; user memory is readable only as current */
		shared = false;
		if (t == bpf_get_current_task_btf()) {
			struct futex_waitv_user w = {};
			if (!bpf_probe_read_user(&w, sizeof(w), (void *)uaddr)) {
				uaddr = w.uaddr;
				shared = !(w.flags & FUTEX_PRIVATE_FLAG);
			}
		}
		break;
	default:
		return 0;
	}
	futex_key(t, uaddr, shared, desc, cache);
	return WAIT_FUTEX;
}

/*
 * Metric 8: the waker was in a futex call when it woke a thread waiting on a
 * futex; the wake is counted on the wakee's futex, keyed as its wait is
 * (wakee_res), so a wake from another process lands on the same shared futex.
 */
__hidden void futex_note_wake(struct task_struct *waker, __u32 slot,
			      const struct res_desc *wakee_res)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(waker);
	struct res_stats *r;
	__u32 tid = waker->pid;
	long nr;
	__u64 now;

	if (!regs)
		return;
	nr = regs->orig_ax;
	if (nr != NR_FUTEX && nr != NR_FUTEX_WAKE && nr != NR_FUTEX_REQUEUE)
		return;
	r = res_stats_get(slot, tid, waker->tgid, RES_FUTEX_WAKE, wakee_res);
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
