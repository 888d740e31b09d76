// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Networking (metrics 11-13): blocked time receiving, sending, accepting and
 * connecting, per socket with its 4-tuple; calls and bytes per socket from
 * sock:sock_recv_length / sock:sock_send_length, which fire only on socket
 * calls. sock:sk_data_ready marks which socket's data ended a poll/select
 * wait (metric 15). Socket fields are read with plain loads (core_fixes.bpf.h).
 */
#include "holdup.bpf.h"

#define AF_INET 2
#define AF_INET6 10

__hidden void net_describe_sock(struct sock *sk, struct res_desc *desc)
{
	/* sk may be untrusted (read from a file or kept in a map): cast for plain loads */
	struct sock_common *c = &KPTR(sk, struct sock)->__sk_common;

	desc->id1 = (__u64)sk;
	desc->id2 = 0;
	desc->file_mode = S_IFSOCK;
	desc->sock.family = c->skc_family;
	desc->sock.protocol = KPTR(sk, struct sock)->sk_protocol;
	desc->sock.sport = c->skc_num;
	desc->sock.dport = __builtin_bswap16(c->skc_dport);
	if (desc->sock.family == AF_INET) {
		__u32 s = c->skc_rcv_saddr;
		__u32 d = c->skc_daddr;
		__builtin_memcpy(desc->sock.saddr, &s, 4);
		__builtin_memcpy(desc->sock.daddr, &d, 4);
	} else if (desc->sock.family == AF_INET6) {
		for (int i = 0; i < 4; i++) {
			__u32 s = c->skc_v6_rcv_saddr.in6_u.u6_addr32[i];
			__u32 d = c->skc_v6_daddr.in6_u.u6_addr32[i];
			__builtin_memcpy(&desc->sock.saddr[i * 4], &s, 4);
			__builtin_memcpy(&desc->sock.daddr[i * 4], &d, 4);
		}
	}
}

__hidden __u32 net_wait_kind(long nr)
{
	switch (nr) {
	case 0: case 19: case 45: case 47: case 299: /* read, readv, recvfrom, recvmsg, recvmmsg */
		return WAIT_SOCK_RECV;
	case 1: case 20: case 44: case 46: case 307: /* write, writev, sendto, sendmsg, sendmmsg */
		return WAIT_SOCK_SEND;
	case 43: case 288: /* accept, accept4 */
		return WAIT_ACCEPT;
	case 42: /* connect */
		return WAIT_CONNECT;
	}
	return 0;
}

static __always_inline int sock_length(struct sock *sk, int ret, __u32 kind)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u32 tid = t->pid;
	struct res_desc d = {};
	struct res_stats *r;

	if (!task_is_target(t) || !state_of(t))
		return 0;
	d.id1 = (__u64)sk;
	r = bpf_map_lookup_elem(&res_stats, &(struct res_key){
		.slot = window_start & 1, .tid = tid, .kind = kind, .id1 = (__u64)sk });
	if (!r) {
		net_describe_sock(sk, &d);
		r = res_stats_get(window_start & 1, tid, t->tgid, kind, &d);
		if (!r)
			return 0;
	}
	__sync_fetch_and_add(&r->calls, 1);
	if (ret > 0)
		__sync_fetch_and_add(&r->bytes, ret);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(handle_sock_recv_length, struct sock *sk, int ret, int flags)
{
	return sock_length(sk, ret, WAIT_SOCK_RECV);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(handle_sock_send_length, struct sock *sk, int ret, int flags)
{
	return sock_length(sk, ret, WAIT_SOCK_SEND);
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(handle_sk_data_ready, const struct sock *sk)
{
	struct cpu_ctx *c;

	/* every packet on the host passes here: leave at once unless it can matter */
	if (poll_waiters <= 0)
		return 0;
	c = this_cpu_ctx();
	if (c) {
		c->data_ready_ts = bpf_ktime_get_ns();
		c->data_ready_sk = (__u64)sk;
		c->data_ready_pid = bpf_get_current_task_btf()->pid;
	}
	return 0;
}
