// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Multiplexing IO (metrics 14-15): time blocked in epoll_wait/epoll_pwait(2)/
 * poll/ppoll/select/pselect6, per epoll instance (its struct file; poll and
 * select per thread), and what ended the wait. For epoll, the file on the
 * instance's ready list at the wake-up: ep_poll_callback queues it there and
 * then wakes the waiter, so when a sleeper is woken the list holds exactly
 * the item that woke it (a waiter sleeps only on an empty list). For poll
 * and select, the socket whose sk_data_ready ran just before the wake-up on
 * the same CPU (that program is attached only while targets wait in poll or
 * select); otherwise the waking thread.
 */
#include "holdup.bpf.h"


__hidden __u32 mux_classify(struct task_struct *t, long nr, __u64 fd, struct res_desc *desc)
{
	struct file *f;

	switch (nr) {
	case 7: case 23: case 270: case 271: /* poll, select, pselect6, ppoll */
		desc->id1 = 0;
		desc->id2 = nr;
		return WAIT_MUX;
	case 232: case 281: case 441: /* epoll_wait, epoll_pwait, epoll_pwait2 */
		f = vfs_fd_file(t, fd);
		/* every epoll file shares one anonymous inode: the file is the instance */
		desc->id1 = (__u64)f;
		desc->id2 = nr;
		return WAIT_MUX;
	}
	return 0;
}

__hidden __u64 mux_take_data_ready(__u64 now, __u32 waker_pid)
{
	/* sk_data_ready -> ep_poll_callback -> wake-up run back to back on one CPU */
	struct cpu_ctx *c = this_cpu_ctx();
	__u64 sk;

	if (!c || !c->data_ready_sk || now - c->data_ready_ts > DATA_READY_NS ||
	    c->data_ready_pid != waker_pid)
		return 0;
	sk = c->data_ready_sk;
	c->data_ready_sk = 0;
	return sk;
}

/* The socket whose readiness ended an epoll wait on epoll file `epfile`, or 0. */
__hidden __u64 mux_epoll_ready_sock(__u64 epfile)
{
	struct eventpoll *ep = BPF_CORE_READ((struct file *)epfile, private_data);
	struct list_head *last;
	struct epitem *epi;
	struct file *f;
	struct socket *sock;

	if (!ep)
		return 0;
	last = BPF_CORE_READ(ep, rdllist.prev);
	if (!last || last == &ep->rdllist)
		return 0; /* empty: a timeout, a signal, or the overflow list */
	epi = container_of(last, struct epitem, rdllink);
	f = BPF_CORE_READ(epi, ffd.file);
	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0; /* an eventfd, pipe, timerfd...: the waking thread is the cause */
	sock = BPF_CORE_READ(f, private_data);
	return (__u64)BPF_CORE_READ(sock, sk);
}
