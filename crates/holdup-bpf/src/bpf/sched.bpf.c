// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Scheduling (metrics 1-5) and the wait attribution that every other metric
 * hangs off: a target thread's time is split into on-CPU, run-queue, iowait,
 * other-D and sleep by sched_switch/sched_waking, and when it goes to sleep
 * the syscall it sleeps in (from its saved user registers) says what it waits
 * on. No syscall tracepoint is used: see DESIGN.md, "Cost rules".
 *
 * This object owns all maps and configuration (HOLDUP_OWNER).
 */
#define HOLDUP_OWNER
#include "holdup.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Type anchor: the ring buffer record has no map type for libbpf-cargo to emit. */
struct exec_event _anchor_exec_event = {};
/*
 * Enum anchors: enums reach the generated Rust (holdup_bpf::types) only
 * through a typed global, and user space reads their values from there
 * instead of copying them (checked at build time by construction).
 */
enum thread_state_kind _anchor_thread_state_kind = ST_ONCPU;
enum wait_kind _anchor_wait_kind = WAIT_NONE;
enum res_kind_extra _anchor_res_kind_extra = RES_FUTEX_WAKE;
enum wake_cause _anchor_wake_cause = CAUSE_THREAD;
enum loss_kind _anchor_loss_kind = LOSS_THREAD_MAP_FULL;

__hidden struct thread_stats *thread_stats_get(struct thread_state *ts, __u32 slot, __u32 tid,
					       struct task_struct *t)
{
	struct thread_stats *s = &ts->stats[slot & 1];

	if (s->tid == 0) {
		s->tid = tid;
		s->tgid = t->tgid;
		s->cgroup_id = task_cgroup_id(t);
		bpf_probe_read_kernel_str(s->comm, sizeof(s->comm), t->comm);
	}
	return s;
}

/*
 * Hand a window's totals of one thread to user space, and start it afresh.
 * The name is read again here: threads rename themselves (prctl, exec).
 */
static __always_inline void flush_thread_stats(struct thread_state *ts, __u32 slot, __u32 tid,
					       struct task_struct *t)
{
	struct thread_key key = { .slot = slot & 1, .tid = tid };
	struct thread_stats *s = &ts->stats[slot & 1];

	if (s->tid == 0)
		return;
	bpf_probe_read_kernel_str(s->comm, sizeof(s->comm), t->comm);
	if (bpf_map_update_elem(&thread_stats, &key, s, BPF_ANY))
		count_loss(LOSS_THREAD_MAP_FULL);
	__builtin_memset(s, 0, sizeof(*s));
}

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

/* Hand a thread's accumulated waits on one resource to the res_stats map. */
static __always_inline void flush_res_acc(struct thread_state *ts, __u32 tid)
{
	struct res_acc *acc = &ts->acc;
	struct res_stats *r;

	if (acc->kind == WAIT_NONE)
		return;
	r = res_stats_get(acc->slot, tid, ts->tgid, acc->kind, &acc->desc);
	if (r) {
		__sync_fetch_and_add(&r->wait_ns, acc->wait_ns);
		__sync_fetch_and_add(&r->waits, acc->waits);
		for (int i = 0; i < NR_BUCKETS; i++)
			if (acc->hist[i])
				__sync_fetch_and_add(&r->hist[i], acc->hist[i]);
	}
	acc->kind = WAIT_NONE;
}

/*
 * The accumulator for the thread's current wait in the current window's
 * slot, flushing whatever it held before. Older slots (a wait split at the
 * boundary) are not accumulated: NULL, and the caller goes to the map.
 */
static __always_inline struct res_acc *res_acc_for(struct thread_state *ts, __u32 tid,
						   __u32 slot)
{
	struct res_acc *acc = &ts->acc;

	if (slot != (window_start & 1))
		return 0;
	if (acc->kind == ts->wait_kind && acc->slot == slot && acc->desc.id1 == ts->res.id1 &&
	    acc->desc.id2 == ts->res.id2)
		return acc;
	flush_res_acc(ts, tid);
	__builtin_memset(acc, 0, sizeof(*acc));
	acc->slot = slot;
	acc->kind = ts->wait_kind;
	acc->desc = ts->res;
	return acc;
}

/*
 * Add [a, b) of the thread's current state to window `slot`. A wait that
 * ends here (closing_dur: its whole length) also lands in the resource's
 * histogram, in the same map entry.
 */
static __always_inline void add_interval(struct thread_state *ts, __u32 tid,
					 struct task_struct *t, __u32 slot, __u64 a, __u64 b,
					 __u64 closing_dur)
{
	__u64 d = b - a;
	__u32 st = ts->state;
	__u32 wk = ts->wait_kind;
	struct thread_stats *s;
	struct res_stats *r;
	struct res_acc *acc;

	if (b <= a || st >= NR_STATES)
		return;
	s = thread_stats_get(ts, slot, tid, t);
	if (!s)
		return;
	__sync_fetch_and_add(&s->state_ns[BOUNDED(st, 7)], d); /* mask: verifier bound */
	if (st < ST_IOWAIT || wk == WAIT_NONE || wk >= NR_WAIT_KINDS)
		return;
	__sync_fetch_and_add(&s->wait_ns[BOUNDED(wk, 15)], d);
	if (wk == WAIT_OTHER)
		return;
	acc = res_acc_for(ts, tid, slot);
	if (acc) {
		acc->wait_ns += d;
		if (closing_dur)
			acc->hist[BOUNDED(log2_bucket(closing_dur), 31)] += 1;
		return;
	}
	r = res_stats_get(slot, tid, ts->tgid, wk, &ts->res);
	if (!r)
		return;
	__sync_fetch_and_add(&r->wait_ns, d);
	if (closing_dur) {
		__u32 bkt = log2_bucket(closing_dur);
		__sync_fetch_and_add(&r->hist[BOUNDED(bkt, 31)], 1);
	}
}

/*
 * Account the current state of a thread up to `now`, split at the window
 * boundary. The window iterator accounts in-flight states at each boundary
 * and moves `acct` up to it, so nothing is counted twice.
 */
static __always_inline void account(struct thread_state *ts, __u32 tid, struct task_struct *t,
				    __u64 now, __u64 closing_dur)
{
	__u64 ws = window_start;
	__u32 slot = ws & 1;
	__u64 start = ts->since > ts->acct ? ts->since : ts->acct;

	if (now <= start)
		return;
	if (start < ws) {
		/* the iterator has not reached this thread yet: credit the old window */
		add_interval(ts, tid, t, slot ^ 1, start, ws, 0);
		start = ws;
	}
	add_interval(ts, tid, t, slot, start, now, closing_dur);
	ts->acct = now;
}

/* Record the end of a sleep: who or what ended it (the wake edge). */
static __always_inline void end_sleep(struct thread_state *ts, __u32 tid, struct task_struct *p,
				      __u64 now)
{
	__u64 ws = window_start;
	__u32 slot = ws & 1;
	/* since may be a hair later: the switch-out can race with the waking on another CPU */
	__u64 dur = now > ts->since ? now - ts->since : 0;
	struct task_struct *waker = bpf_get_current_task_btf();
	struct wake_key wk = {};
	struct wake_stats *w;
	__u64 sk = 0;
	__u32 waker_pid;
	struct cpu_ctx *c = this_cpu_ctx();
	bool timer = c && c->timer_ts && now - c->timer_ts < SAME_EVENT_NS;

	/*
	 * Who (or what) ended the sleep: metric 5, 8 and 15. A recv or accept
	 * sleeper not woken by a timer was woken by its own socket (data, a
	 * connection, or a state change on it): the wait's resource is the
	 * socket. An epoll sleeper's socket is on the instance's ready list.
	 */
	waker_pid = waker->pid;
	if (socket_wait(ts->wait_kind)) {
		__sync_fetch_and_add(&socket_waiters, -1);
		if (!timer && ts->wait_kind != WAIT_MUX)
			sk = ts->res.id1;
		else if (!timer && ts->res.id1)
			sk = mux_epoll_ready_sock(ts->res.id1);
		else if (!timer)
			sk = mux_take_data_ready(now, waker_pid);
	}
	wk.slot = slot;
	wk.wakee_tid = tid;
	wk.wait_kind = ts->wait_kind;
	wk.res_id = ts->res.id1;
	{
		bool kernel = waker_pid == 0 || timer;
		if (c && (ts->state == ST_IOWAIT || ts->state == ST_DSLEEP) &&
		    now - c->blk_done_ts < SAME_EVENT_NS)
			kernel = true;
		if (sk) {
			wk.cause = CAUSE_SOCKET;
			wk.cause_id = sk;
		} else if (kernel) {
			wk.cause = CAUSE_KERNEL;
		} else {
			wk.cause = CAUSE_THREAD;
			wk.waker_tid = waker_pid;
		}
	}
	w = lookup_or_init(&wake_stats, &wk, (void *)zero_value, LOSS_WAKE_MAP_FULL);
	if (!w)
		return;
	if (w->count == 0) {
		w->wakee_tgid = ts->tgid;
		if (wk.cause == CAUSE_THREAD) {
			w->waker_tgid = waker->tgid;
			bpf_probe_read_kernel_str(w->waker_comm, sizeof(w->waker_comm), waker->comm);
		} else if (wk.cause == CAUSE_SOCKET && sk == ts->res.id1) {
			w->sock = ts->res.sock; /* the wait's own socket, described at sleep */
		} else if (wk.cause == CAUSE_SOCKET) {
			struct res_desc d = {};
			net_describe_sock((struct sock *)sk, &d);
			w->sock = d.sock;
		}
	}
	__sync_fetch_and_add(&w->count, 1);
	__sync_fetch_and_add(&w->sleep_ns, dur);

	if (ts->wait_kind == WAIT_FUTEX && wk.cause == CAUSE_THREAD)
		futex_note_wake(waker, slot, &ts->res);
}

/* What is this sleeping task blocked on? Reads its saved user registers. */
static __always_inline void classify_wait(struct task_struct *t, struct thread_state *ts)
{
	struct pt_regs *regs;
	long nr;
	__u64 fd;
	__u32 kind;

	ts->wait_kind = WAIT_NONE;
	__builtin_memset(&ts->res, 0, sizeof(ts->res));
	if (t->flags & PF_KTHREAD_)
		return;
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	if (!regs)
		return;
	nr = regs->orig_ax;
	if (nr < 0)
		return; /* not in a syscall: a page fault, or preempted in user space */
	fd = regs->di;

	kind = futex_classify(t, regs, nr, &ts->res, &ts->fkey);
	if (!kind)
		kind = mux_classify(t, nr, fd, &ts->res);
	if (!kind)
		kind = net_classify(t, nr, fd, &ts->res);
	if (!kind) {
		switch (nr) {
		case 0: case 17: case 19: case 295: case 327: /* read family */
			kind = WAIT_FILE_READ;
			break;
		case 1: case 18: case 20: case 296: case 328: /* write family */
		case 74: case 75: case 277:                   /* fsync, fdatasync, sync_file_range */
			kind = WAIT_FILE_WRITE;
			break;
		default:
			kind = WAIT_OTHER;
		}
		if (kind != WAIT_OTHER) {
			struct file *f = vfs_fd_file(t, fd);
			if (f)
				vfs_describe(f, &ts->res);
			else
				kind = WAIT_OTHER;
		}
	}
	ts->wait_kind = kind;
}

static __always_inline __u32 sleep_state(struct task_struct *t, unsigned int prev_state)
{
	if ((prev_state & TASK_UNINTERRUPTIBLE_) && !(prev_state & TASK_NOLOAD_))
		return BPF_CORE_READ_BITFIELD_PROBED(t, in_iowait) ? ST_IOWAIT : ST_DSLEEP;
	return ST_SLEEP;
}

static __always_inline void begin_wait(struct thread_state *ts, __u32 tid, struct task_struct *t)
{
	struct thread_stats *s;
	__u32 wk = ts->wait_kind;
	__u32 slot = window_start & 1;

	if (wk == WAIT_NONE || wk >= NR_WAIT_KINDS)
		return;
	if (socket_wait(wk))
		__sync_fetch_and_add(&socket_waiters, 1);
	s = thread_stats_get(ts, slot, tid, t);
	if (s)
		__sync_fetch_and_add(&s->wait_cnt[BOUNDED(wk, 15)], 1);
	if (wk == WAIT_OTHER)
		return;
	{
		struct res_acc *acc = res_acc_for(ts, tid, slot);
		if (acc)
			acc->waits += 1;
	}
}

/* A target thread seen for the first time: start tracking it from now. */
static __always_inline struct thread_state *track(__u32 tid, struct task_struct *t, __u32 state,
						  __u64 now)
{
	struct thread_state *ts;

	ts = bpf_task_storage_get(&thread_states, t, (void *)zero_value,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ts) {
		count_loss(LOSS_STATE_MAP_FULL);
		return 0;
	}
	ts->since = now;
	ts->acct = now;
	ts->state = state;
	ts->tgid = t->tgid;
	return ts;
}

/* Who ran instead: walk this CPU's recent run segments over the wait [since, now). */
static __always_inline void blame_runq(struct cpu_ring *ring, struct task_struct *victim,
				       __u32 vtid, __u32 vtgid, __u64 since, __u64 now,
				       struct thread_stats *vs)
{
	__u64 covered_from = now;
	__u32 slot = window_start & 1;

	for (int i = 0; i < RQ_RING; i++) {
		__u32 idx = (ring->head + RQ_RING - 1 - i) % RQ_RING;
		struct run_seg *seg = &ring->segs[idx & (RQ_RING - 1)];
		__u64 a, b;

		if (seg->end <= since || seg->end == 0)
			break;
		a = seg->start > since ? seg->start : since;
		b = seg->end < now ? seg->end : now;
		covered_from = a;
		if (b <= a || seg->pid == 0 || seg->pid == vtid)
			continue;
		{
			struct culprit_key ck = { .slot = slot, .victim_tid = vtid,
						  .culprit_tid = seg->pid };
			struct culprit_stats *c =
				lookup_or_init(&culprit_stats, &ck, (void *)zero_value,
					       LOSS_CULPRIT_MAP_FULL);
			if (!c)
				continue;
			if (c->ns == 0) {
				/* the culprit ran moments ago; task_structs are RCU-freed */
				struct task_struct *ct = (struct task_struct *)seg->task;
				c->victim_tgid = vtgid;
				c->culprit_tgid = seg->tgid;
				c->culprit_cgroup = BPF_CORE_READ(ct, cgroups, dfl_cgrp, kn, id);
				bpf_probe_read_kernel_str(c->culprit_comm, TASK_COMM_LEN, &ct->comm);
			}
			__sync_fetch_and_add(&c->ns, b - a);
		}
	}
	if (covered_from > since && vs)
		__sync_fetch_and_add(&vs->runq_unattributed_ns, covered_from - since);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(handle_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 prev_tid = prev->pid;
	__u32 next_tid = next->pid;
	__u32 zero = 0;
	struct cpu_ring *ring = bpf_map_lookup_elem(&cpu_rings, &zero);
	struct thread_state *ts;

	/* Remember who held this CPU, for "who ran instead" (all tasks, cheap). */
	if (ring) {
		__u32 h = ring->head & (RQ_RING - 1);
		struct run_seg *seg = &ring->segs[h];
		seg->start = ring->cur_in;
		seg->end = now;
		seg->pid = prev_tid;
		seg->tgid = prev->tgid;
		seg->task = (__u64)prev;
		ring->head = (h + 1) & (RQ_RING - 1);
		ring->cur_in = now;
	}

	/* prev leaves the CPU */
	if (prev_tid && task_is_target(prev)) {
		ts = state_of(prev);
		if (!ts) {
			count_loss(LOSS_UNKNOWN_STATE);
			ts = track(prev_tid, prev, ST_ONCPU, now);
		}
		if (ts) {
			account(ts, prev_tid, prev, now, 0);
			if (prev_state & TASK_DEAD_) {
				struct thread_stats *s =
					thread_stats_get(ts, window_start & 1, prev_tid, prev);
				s->exited = 1;
				flush_res_acc(ts, prev_tid);
				flush_thread_stats(ts, 0, prev_tid, prev);
				flush_thread_stats(ts, 1, prev_tid, prev);
				bpf_task_storage_delete(&thread_states, prev);
			} else if (preempt || prev_state == TASK_RUNNING_) {
				struct thread_stats *s =
					thread_stats_get(ts, window_start & 1, prev_tid, prev);
				__sync_fetch_and_add(&s->preempted, 1);
				ts->state = ST_RUNQ;
				ts->wait_kind = WAIT_NONE;
				ts->since = now;
			} else {
				ts->state = sleep_state(prev, prev_state);
				ts->since = now;
				classify_wait(prev, ts);
				begin_wait(ts, prev_tid, prev);
			}
		}
	}

	/* next gets the CPU */
	if (next_tid && task_is_target(next)) {
		ts = state_of(next);
		if (!ts) {
			count_loss(LOSS_UNKNOWN_STATE);
			ts = track(next_tid, next, ST_RUNQ, now);
		}
		if (ts) {
			__u64 since = ts->since;
			__u32 was = ts->state;
			account(ts, next_tid, next, now, 0);
			/* a sleep that ended without a wake-up we saw */
			if (was >= ST_IOWAIT && was < NR_STATES && socket_wait(ts->wait_kind))
				__sync_fetch_and_add(&socket_waiters, -1);
			if (was == ST_RUNQ) {
				struct thread_stats *s =
					thread_stats_get(ts, window_start & 1, next_tid, next);
				{
					__u32 b = log2_bucket(now > since ? now - since : 0);
					__sync_fetch_and_add(&s->runq_cnt, 1);
					if (b < NR_BUCKETS)
						__sync_fetch_and_add(&s->runq_hist[BOUNDED(b, 31)], 1);
				}
				if (ring)
					blame_runq(ring, next, next_tid, ts->tgid, since, now, s);
			}
			ts->state = ST_ONCPU;
			ts->wait_kind = WAIT_NONE;
			ts->since = now;
		}
	}
	return 0;
}

static __always_inline int on_wakeup(struct task_struct *p, bool is_new)
{
	__u64 now;
	__u32 tid = p->pid;
	struct thread_state *ts;

	if (!task_is_target(p))
		return 0;
	now = bpf_ktime_get_ns();
	ts = state_of(p);
	if (!ts) {
		if (!is_new)
			count_loss(LOSS_UNKNOWN_STATE);
		track(tid, p, ST_RUNQ, now);
		return 0;
	}
	if (ts->state < ST_IOWAIT || ts->state >= NR_STATES)
		return 0; /* already runnable or running */
	account(ts, tid, p, now, now > ts->since ? now - ts->since : 1);
	end_sleep(ts, tid, p, now);
	ts->state = ST_RUNQ;
	ts->wait_kind = WAIT_NONE;
	ts->since = now;
	return 0;
}

/*
 * sched_waking, not sched_wakeup: waking runs in the waker's context, while
 * wakeup may run later on the wakee's CPU from an IPI (TTWU_QUEUE), where
 * `current` is whatever ran there, usually the idle task.
 */
SEC("tp_btf/sched_waking")
int BPF_PROG(handle_sched_waking, struct task_struct *p)
{
	return on_wakeup(p, false);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(handle_sched_wakeup_new, struct task_struct *p)
{
	return on_wakeup(p, true);
}

/* Follow children: a new process of a traced process is traced too. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid;
	__u32 ctgid = child->tgid;

	if (targ_all || ptgid == ctgid || tgid_is_target(ctgid))
		return 0;
	/* a cgroup's new process is in it from birth, followed or not */
	if ((follow_children && tgid_is_target(ptgid)) ||
	    (targ_cgroup && task_in_target_cgroup(child)))
		set_target_tgid(ctgid);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_sched_process_exit, struct task_struct *p)
{
	__u32 tid = p->pid;
	struct thread_state *ts;

	if (!task_is_target(p))
		return 0;
	ts = state_of(p);
	if (!ts)
		return 0;
	thread_stats_get(ts, window_start & 1, tid, p)->exited = 1;
	return 0;
}

/* --comm targets: tell user space about every new program so it can match it. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_sched_process_exec, struct task_struct *p, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct exec_event *e;

	if (!targ_comm)
		return 0;
	e = bpf_ringbuf_reserve(&exec_events, sizeof(*e), 0);
	if (!e) {
		count_loss(LOSS_RINGBUF);
		return 0;
	}
	e->tgid = BPF_CORE_READ(p, tgid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Timer callbacks (nanosleep, poll and futex timeouts) wake threads on the kernel's behalf. */
SEC("tp_btf/hrtimer_expire_entry")
int BPF_PROG(handle_hrtimer_entry)
{
	struct cpu_ctx *c = this_cpu_ctx();
	if (c)
		c->timer_ts = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/hrtimer_expire_exit")
int BPF_PROG(handle_hrtimer_exit)
{
	struct cpu_ctx *c = this_cpu_ctx();
	if (c)
		c->timer_ts = 0;
	return 0;
}

/*
 * Window boundary, run by user space once per window over all tasks: account
 * every target thread's in-flight state up to the boundary into the window
 * that just closed, and start tracking target threads not yet known (at
 * startup, and processes that became targets without a fork we saw).
 */
SEC("iter/task")
int window_cut(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	__u64 ws = window_start;
	struct thread_state *ts;
	__u32 tid;

	if (!t)
		return 0;
	tid = t->pid;
	if (!task_is_target(t)) {
		/* cgroup targets: processes that moved into a target cgroup */
		if (!targ_cgroup || tid == 0 || t->tgid == self_tgid || !task_in_target_cgroup(t))
			return 0;
		set_target_tgid(t->tgid);
	}
	ts = state_of(t);
	if (ts) {
		__u64 start = ts->since > ts->acct ? ts->since : ts->acct;
		if (start < ws) {
			add_interval(ts, tid, t, (ws & 1) ^ 1, start, ws, 0);
			ts->acct = ws;
		}
		if (ts->acc.slot != (ws & 1))
			flush_res_acc(ts, tid);
		flush_thread_stats(ts, (ws & 1) ^ 1, tid, t);
		return 0;
	}
	{
		__u32 state;
		unsigned int st = t->__state;
		if (t->on_cpu)
			state = ST_ONCPU;
		else if (st == TASK_RUNNING_)
			state = ST_RUNQ;
		else if (st & TASK_DEAD_)
			return 0;
		else
			state = sleep_state(t, st);
		ts = track(tid, t, state, ws);
		if (ts && state >= ST_IOWAIT) {
			classify_wait(t, ts);
			if (socket_wait(ts->wait_kind))
				__sync_fetch_and_add(&socket_waiters, 1);
		}
	}
	return 0;
}
