/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Small arithmetic helpers of the BPF programs: bounds the verifier sees, log2. */
#ifndef __HOLDUP_BITS_BPF_H
#define __HOLDUP_BITS_BPF_H

/* Mask an index in a way clang cannot optimise away, so the verifier sees the bound. */
#define BOUNDED(v, mask)                                   \
	({                                                 \
		__u64 __b = (v);                           \
		asm volatile("%0 &= " #mask : "+r"(__b));  \
		__b;                                       \
	})

/* floor(log2(v)) for v >= 1 (0 for 0): six compares, no loop. */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

/* Histogram bucket of a duration: [2^i, 2^(i+1)) microseconds, the last one open. */
static __always_inline __u32 log2_bucket(__u64 ns)
{
	__u32 b = log2_u64(ns / 1000);

	return b < NR_BUCKETS - 1 ? b : NR_BUCKETS - 1;
}

#endif /* __HOLDUP_BITS_BPF_H */
