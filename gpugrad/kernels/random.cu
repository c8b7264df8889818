// Dropout with a counter-based generator (Philox4x32-10, Salmon et al. 2011): element i's
// random number is a pure function of (seed, offset, i), so a mask needs no state besides
// two integers, the backward pass redraws it instead of keeping it, and a captured CUDA
// graph draws a new mask at every replay by reading (seed, offset) from device memory.
// cuRAND cannot be used inside stream capture through CuPy; this kernel can.
#include "common.cuh"

#define GG_PHILOX_M0 0xD2511F53u
#define GG_PHILOX_M1 0xCD9E8D57u
#define GG_PHILOX_W0 0x9E3779B9u
#define GG_PHILOX_W1 0xBB67AE85u

// Four 32-bit words for counter (group, offset) under key seed: ten rounds, nine key bumps
__device__ __forceinline__ void philox4x32_10(unsigned long long group, unsigned long long offset,
                                              unsigned long long seed, unsigned int out[4]) {
    unsigned int c0 = (unsigned int)group, c1 = (unsigned int)(group >> 32);
    unsigned int c2 = (unsigned int)offset, c3 = (unsigned int)(offset >> 32);
    unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        const unsigned long long p0 = (unsigned long long)GG_PHILOX_M0 * c0;
        const unsigned long long p1 = (unsigned long long)GG_PHILOX_M1 * c2;
        const unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        const unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += GG_PHILOX_W0;
        k1 += GG_PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

// out[i] = x[i] * scale where the uniform draw u_i = (word_i >> 8) / 2^24 is >= p, else
// x[i] * 0 (PyTorch's product with the mask: -0 for a negative, NaN for NaN and infinities);
// word_i is word i % 4 of the Philox block of counter (i / 4, offset)
template <typename T>
__device__ __forceinline__ void dropout_body(const T* __restrict__ x, T* __restrict__ out,
                                             long long n, unsigned long long seed,
                                             unsigned long long offset, float p, float scale) {
    const long long groups = (n + 3) / 4;
    const long long stride = gg_thread_stride();
    for (long long g = gg_thread_index(); g < groups; g += stride) {
        unsigned int words[4];
        philox4x32_10((unsigned long long)g, offset, seed, words);
        for (int j = 0; j < 4; ++j) {
            const long long i = 4 * g + j;
            if (i < n) {
                const float u = (float)(words[j] >> 8) * (1.0f / 16777216.0f);
                out[i] = from_float<T>(to_float(x[i]) * (u >= p ? scale : 0.f));
            }
        }
    }
}

#define GG_RANDOM_KERNELS(SUFFIX, T)                                                           \
    extern "C" __global__ void dropout_##SUFFIX(const T* __restrict__ x, T* __restrict__ out,  \
                                                long long n, long long seed, long long offset, \
                                                float p, float scale) {                        \
        dropout_body<T>(x, out, n, (unsigned long long)seed, (unsigned long long)offset, p,    \
                        scale);                                                                \
    }                                                                                          \
    /* the form a captured graph runs: seed and base offset read from device memory */         \
    extern "C" __global__ void dropout_state_##SUFFIX(const T* __restrict__ x,                 \
                                                      T* __restrict__ out, long long n,        \
                                                      const long long* __restrict__ state,     \
                                                      long long delta, float p, float scale) { \
        dropout_body<T>(x, out, n, (unsigned long long)state[0],                               \
                        (unsigned long long)state[1] + (unsigned long long)delta, p, scale);   \
    }

GG_RANDOM_KERNELS(f32, float)
GG_RANDOM_KERNELS(f16, gg_half)
GG_RANDOM_KERNELS(bf16, gg_bf16)

// state[1] += count: a captured step advances its generator on the device, no host sync
extern "C" __global__ void philox_advance(long long* state, long long count) {
    if (blockIdx.x == 0 && threadIdx.x == 0) state[1] += count;
}
