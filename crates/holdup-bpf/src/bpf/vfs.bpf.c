// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * VFS (metrics 9-10): blocked time in read/write-family syscalls and fsync on
 * files that are not sockets (regular files, pipes, character devices), per
 * file. The file comes from the sleeping thread's fd table, read with CO-RE.
 */
#include "holdup.bpf.h"

__hidden struct file *vfs_fd_file(struct task_struct *t, __u64 fd)
{
	struct files_struct *files = t->files;
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = 0;

	if (!files)
		return 0;
	fdt = files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return 0;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xffffff]))
		return 0;
	return f;
}

__hidden __u32 vfs_describe(struct file *f, struct res_desc *desc)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	const unsigned char *name;

	desc->file_mode = BPF_CORE_READ(ino, i_mode) & S_IFMT;
	desc->id1 = BPF_CORE_READ(ino, i_ino);
	desc->id2 = BPF_CORE_READ(ino, i_sb, s_dev);
	name = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	bpf_probe_read_kernel_str(desc->name, sizeof(desc->name), name);
	return desc->file_mode;
}
