// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Networking (metrics 11-13): blocked time receiving, sending, accepting and
 * connecting, per socket with its 4-tuple; calls and bytes per socket from
 * sock:sock_recv_length / sock:sock_send_length, which fire only on socket
 * calls. sock:sk_data_ready marks which socket's data ended a wait (metric 15).
 */
#include "holdup.bpf.h"

#define AF_INET 2
#define AF_INET6 10

__hidden void net_describe_sock(struct sock *sk, struct res_desc *desc)
{
	struct sock_common *c = &sk->__sk_common;

	desc->id1 = (__u64)sk;
	desc->id2 = 0;
	desc->file_mode = S_IFSOCK;
	desc->sock.family = BPF_CORE_READ(c, skc_family);
	desc->sock.protocol = BPF_CORE_READ(sk, sk_protocol);
	desc->sock.sport = BPF_CORE_READ(c, skc_num);
	desc->sock.dport = __builtin_bswap16(BPF_CORE_READ(c, skc_dport));
	if (desc->sock.family == AF_INET) {
		__u32 s = BPF_CORE_READ(c, skc_rcv_saddr);
		__u32 d = BPF_CORE_READ(c, skc_daddr);
		__builtin_memcpy(desc->sock.saddr, &s, 4);
		__builtin_memcpy(desc->sock.daddr, &d, 4);
	} else if (desc->sock.family == AF_INET6) {
		BPF_CORE_READ_INTO(&desc->sock.saddr, c, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&desc->sock.daddr, c, skc_v6_daddr.in6_u.u6_addr8);
	}
}

__hidden __u32 net_classify(struct task_struct *t, long nr, __u64 fd, struct res_desc *desc)
{
	__u32 kind;
	struct file *f;
	struct socket *sock;
	struct sock *sk;

	switch (nr) {
	case 0: case 19: case 45: case 47: case 299: /* read, readv, recvfrom, recvmsg, recvmmsg */
		kind = WAIT_SOCK_RECV;
		break;
	case 1: case 20: case 44: case 46: case 307: /* write, writev, sendto, sendmsg, sendmmsg */
		kind = WAIT_SOCK_SEND;
		break;
	case 43: case 288: /* accept, accept4 */
		kind = WAIT_ACCEPT;
		break;
	case 42: /* connect */
		kind = WAIT_CONNECT;
		break;
	default:
		return 0;
	}
	f = vfs_fd_file(t, fd);
	if (!f)
		return 0;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0; /* read/write on a file or pipe: VFS */
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	net_describe_sock(sk, desc);
	return kind;
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
	if (socket_waiters <= 0)
		return 0;
	c = this_cpu_ctx();
	if (c) {
		c->data_ready_ts = bpf_ktime_get_ns();
		c->data_ready_sk = (__u64)sk;
		c->data_ready_pid = bpf_get_current_task_btf()->pid;
	}
	return 0;
}
