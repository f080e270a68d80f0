// memsaver's device kernels, built into one fatbin (sm_80, sm_90 and PTX) that
// saver/kernels.c loads with cuModuleLoadData: the backup digest (saver/digest.h)
// and the restore copy (saver/copy.h).
#include "saver/digest_mix.h"

#define THREADS 512

// The backup digest: two 64-bit lanes per chunk of a region's kept range
// (saver/digest_mix.h), each chunk spread over several blocks.
// Block b of the grid digests slice b % bpc of chunk b / bpc and adds its
// lanes into out (zeroed by the caller): every chunk is spread over bpc
// blocks, so a region of a few chunks still fills the GPU.  The index of a
// word is its index within its chunk, as the digest's definition wants.
extern "C" __global__ void __launch_bounds__(THREADS)
	msv_digest(const unsigned char *base, unsigned long long len, unsigned long long chunk,
		   unsigned long long *out, unsigned bpc)
{
	__shared__ unsigned long long sa[THREADS / 32], sb[THREADS / 32];
	unsigned long long c = blockIdx.x / bpc, part = blockIdx.x % bpc;
	unsigned long long lo = c * chunk, hi = lo + chunk < len ? lo + chunk : len;
	unsigned long long n = (hi - lo) / 8, per = (n + bpc - 1) / bpc, a = 0, b = 0;
	unsigned long long first = part * per, last = first + per < n ? first + per : n;
	const unsigned long long *w = (const unsigned long long *)(base + lo);
	for (unsigned long long i = first + threadIdx.x; i < last; i += THREADS) {
		unsigned long long v = __ldg(w + i);
		a += msv_digest_mix(v, i, MSV_DIGEST_KEY0);
		b += msv_digest_mix(v, i, MSV_DIGEST_KEY1);
	}
	if (part == bpc - 1 && threadIdx.x == 0 && (hi - lo) % 8) {
		unsigned long long v = 0;
		for (unsigned k = 0; k < (hi - lo) % 8; k++)
			v |= (unsigned long long)base[lo + n * 8 + k] << (8 * k);
		a += msv_digest_mix(v, n, MSV_DIGEST_KEY0);
		b += msv_digest_mix(v, n, MSV_DIGEST_KEY1);
	}
	for (int o = 16; o > 0; o /= 2) {
		a += __shfl_down_sync(0xffffffffu, a, o);
		b += __shfl_down_sync(0xffffffffu, b, o);
	}
	if (threadIdx.x % 32 == 0)
		sa[threadIdx.x / 32] = a, sb[threadIdx.x / 32] = b;
	__syncthreads();
	if (threadIdx.x == 0) {
		for (int k = 1; k < THREADS / 32; k++)
			a += sa[k], b += sb[k];
		atomicAdd(out + 2 * c, a);
		atomicAdd(out + 2 * c + 1, b);
	}
}

// The restore copy: len bytes from src (pinned host memory, by its mapped
// address) to dst (device memory), both 16-byte aligned.  The SMs read the
// host memory themselves, so the copy does not queue behind the copy engines,
// which the driver keeps busy clearing memory just released (docs/saver.md).
// Block b copies bytes [b * RESTORE_BLOCK, (b + 1) * RESTORE_BLOCK); the last
// block also copies the len % 16 bytes of the tail.
#define RESTORE_VECS 8 // 16-byte vectors per thread: 64 KiB per block
extern "C" __global__ void __launch_bounds__(THREADS)
	msv_restore(uint4 *dst, const uint4 *src, unsigned long long len)
{
	unsigned long long n = len / 16, first = (unsigned long long)blockIdx.x * THREADS * RESTORE_VECS;
	uint4 v[RESTORE_VECS];
#pragma unroll
	for (int k = 0; k < RESTORE_VECS; k++) {
		unsigned long long i = first + k * THREADS + threadIdx.x;
		if (i < n)
			v[k] = src[i];
	}
#pragma unroll
	for (int k = 0; k < RESTORE_VECS; k++) {
		unsigned long long i = first + k * THREADS + threadIdx.x;
		if (i < n)
			dst[i] = v[k];
	}
	if (blockIdx.x == gridDim.x - 1 && threadIdx.x < len % 16)
		((unsigned char *)dst)[n * 16 + threadIdx.x] = ((const unsigned char *)src)[n * 16 + threadIdx.x];
}
