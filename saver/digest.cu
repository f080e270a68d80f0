// The backup digest kernel: two 64-bit lanes per chunk of a region's kept
// range (saver/digest_mix.h), each chunk spread over several blocks.  Built into a fatbin
// (sm_80, sm_90 and PTX) that saver/digest.c loads with cuModuleLoadData.
#include "saver/digest_mix.h"

#define THREADS 512

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
