/* The backup digest's arithmetic, shared by the GPU kernel (saver/kernels.cu)
 * and the fake driver's model of that kernel (tests/fakecuda).
 *
 * A chunk's digest is two 64-bit lanes; each lane is the wrapping sum over
 * the chunk's 64-bit words of mix(word, index, key).  mix is a bijection of
 * the word for a fixed index, so a change to any single word always changes
 * both lanes (exact); several changed words go unnoticed only when their
 * differences cancel in both lanes at once, about 2^-128 for arbitrary
 * data.  A last partial word is zero-padded.  The sum makes the order of
 * accumulation free, so a GPU block reduces it in any order. */
#ifndef MSV_DIGEST_MIX_H
#define MSV_DIGEST_MIX_H

#include <stdint.h>

#ifdef __CUDACC__
#define MSV_DIGEST_FN __host__ __device__ static inline
#else
#define MSV_DIGEST_FN static inline
#endif

#define MSV_DIGEST_KEY0 0x9e3779b97f4a7c15ull
#define MSV_DIGEST_KEY1 0xd6e8feb86659fd93ull

MSV_DIGEST_FN uint64_t msv_digest_mix(uint64_t word, uint64_t index, uint64_t key)
{
	uint64_t x = word ^ (index * key + key);
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

#endif
