// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Multiplexing IO (metrics 14-15): time blocked in epoll_wait/epoll_pwait(2)/
 * poll/ppoll/select/pselect6, per epoll instance (poll and select per thread),
 * and what ended the wait: the socket whose sk_data_ready ran just before the
 * wake-up on the same CPU, or the waking thread.
 */
#include "holdup.bpf.h"

/* sk_data_ready -> ep_poll_callback -> wake-up run back to back on one CPU. */
#define DATA_READY_WINDOW_NS 50000

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
		if (f)
			vfs_describe(f, desc);
		desc->id2 = nr;
		return WAIT_MUX;
	}
	return 0;
}

__hidden __u64 mux_take_data_ready(__u64 now)
{
	__u32 zero = 0;
	struct data_ready *dr = bpf_map_lookup_elem(&data_ready, &zero);
	__u64 sk;

	if (!dr || !dr->sk || now - dr->ts > DATA_READY_WINDOW_NS)
		return 0;
	sk = dr->sk;
	dr->sk = 0;
	return sk;
}
