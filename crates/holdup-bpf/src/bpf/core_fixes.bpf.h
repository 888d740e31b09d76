/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Reads of kernel structures that differ between kernel versions, or that
 * need a cast to be read with plain loads. Everything version-dependent is
 * here, so the subsystem files read kernel memory one way.
 *
 * Pointers that do not come from the program's arguments (a struct file
 * from an fd table, a socket pointer kept in a map) are untrusted: reading
 * them with BPF_CORE_READ costs one bpf_probe_read_kernel helper call per
 * field. bpf_core_cast (the bpf_rdonly_cast kfunc, which the verifier turns
 * into a register move) makes them read-only BTF pointers instead, whose
 * field reads are single inline loads that fault safely.
 */
#ifndef __HOLDUP_CORE_FIXES_BPF_H
#define __HOLDUP_CORE_FIXES_BPF_H

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* An untrusted kernel pointer (scalar) as a read-only struct pointer. */
#define KPTR(ptr, type) bpf_core_cast((void *)(ptr), type)

/* The cgroup v2 id of a task (trusted pointer: plain loads). */
static __always_inline __u64 task_cgroup_id(struct task_struct *t)
{
	return t->cgroups->dfl_cgrp->kn->id;
}

/* Sleeping in io_schedule()? (a bitfield: the probed read works on every layout) */
static __always_inline bool task_in_iowait(struct task_struct *t)
{
	return BPF_CORE_READ_BITFIELD_PROBED(t, in_iowait);
}

/*
 * The address space's mmap write sequence (odd while write-locked), or 0 on
 * kernels without mm_lock_seq (6.4+ has it; then nothing is cached).
 */
static __always_inline __u32 mm_write_seq(struct mm_struct *mm)
{
	if (!bpf_core_field_exists(mm->mm_lock_seq))
		return 0;
	return BPF_CORE_READ(mm, mm_lock_seq.sequence);
}

/* S_IFMT bits of a file's inode (f untrusted, non-NULL). */
static __always_inline __u32 file_mode(struct file *f)
{
	return KPTR(f, struct file)->f_inode->i_mode & S_IFMT;
}

/* The struct sock behind a socket file, or 0 when the file is not a socket. */
static __always_inline struct sock *file_sock(struct file *f)
{
	struct file *kf = KPTR(f, struct file);
	struct socket *sock;

	if ((kf->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return 0;
	sock = KPTR(kf->private_data, struct socket);
	return sock->sk;
}

#endif /* __HOLDUP_CORE_FIXES_BPF_H */
