// Runs CUDA C kernels on the CPU: the CUDA keywords, built-in variables, barriers,
// warp shuffles and atomics, over fibers on one OS thread.
//
// A launch runs the blocks one after another, so __shared__ can be static storage. The
// threads of a block are fibers: each starts with makecontext and switches with
// _setjmp/_longjmp (swapcontext saves the signal mask with a system call, several times
// slower) at every barrier. A warp shuffle writes to a per-warp scratch array between two
// warp barriers. A barrier that only part of a block (or warp) reaches is reported.
#pragma once

#define GPUGRAD_CPU_SHIM 1

#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

typedef _Float16 gg_half;
inline float gg_h2f(gg_half h) { return static_cast<float>(h); }
inline gg_half gg_f2h(float f) { return static_cast<gg_half>(f); }

struct gg_bf16 {
    unsigned short bits;
};

// float32 -> bfloat16 rounding to nearest even, NaN kept quiet (cvt.rn.bf16.f32's result)
inline unsigned short gg_f2bf_bits(float f) {
    const unsigned int u = std::bit_cast<unsigned int>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

using std::fabs;
using std::max;
using std::min;
inline float fmaxf(float a, float b) { return std::fmax(a, b); }
inline float fminf(float a, float b) { return std::fmin(a, b); }
inline float __int_as_float(unsigned int i) { return std::bit_cast<float>(i); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

namespace gg_shim {

enum Wait { RUNNING = 0, AT_BLOCK = 1, AT_WARP = 2, DONE = 3 };

struct Fiber {
    ucontext_t context;
    jmp_buf jump;
    int wait = RUNNING;
    bool started = false;
};

struct Block {
    std::vector<Fiber> fibers;
    int current = 0;
    int threads = 0;
    jmp_buf scheduler;
    uint64_t warp_scratch[32][32];
    const char* error = nullptr;
};

inline Block* block_ = nullptr;

}  // namespace gg_shim

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace gg_shim {

inline int linear_thread() {
    return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

// park this fiber at a barrier and hand control back to the scheduler
inline void wait_at(int kind) {
    Fiber& f = block_->fibers[block_->current];
    f.wait = kind;
    if (_setjmp(f.jump) == 0) _longjmp(block_->scheduler, 1);
}

}  // namespace gg_shim

inline void __syncthreads() { gg_shim::wait_at(gg_shim::AT_BLOCK); }
inline void __syncwarp(unsigned = 0xffffffffu) { gg_shim::wait_at(gg_shim::AT_WARP); }

template <typename T>
inline T gg_shuffle(T value, int source_lane) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    const int tid = gg_shim::linear_thread();
    const int warp = tid / 32, lane = tid % 32;
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    gg_shim::block_->warp_scratch[warp][lane] = bits;
    gg_shim::wait_at(gg_shim::AT_WARP);  // every lane has written
    T out = value;
    if (source_lane >= 0 && source_lane < 32)
        std::memcpy(&out, &gg_shim::block_->warp_scratch[warp][source_lane], sizeof(T));
    gg_shim::wait_at(gg_shim::AT_WARP);  // every lane has read before the next write
    return out;
}

template <typename T> inline T __shfl_sync(unsigned, T v, int src, int = 32) {
    return gg_shuffle(v, src);
}
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int mask, int = 32) {
    return gg_shuffle(v, (gg_shim::linear_thread() % 32) ^ mask);
}
template <typename T> inline T __shfl_down_sync(unsigned, T v, unsigned delta, int = 32) {
    const int lane = gg_shim::linear_thread() % 32;
    return gg_shuffle(v, lane + (int)delta < 32 ? lane + (int)delta : lane);
}
template <typename T> inline T __shfl_up_sync(unsigned, T v, unsigned delta, int = 32) {
    const int lane = gg_shim::linear_thread() % 32;
    return gg_shuffle(v, lane - (int)delta >= 0 ? lane - (int)delta : lane);
}

template <typename T> inline T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}
template <typename T> inline T atomicMax(T* address, T value) {
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (old < value && !ref.compare_exchange_weak(old, value)) {
    }
    return old;
}
template <typename T> inline T atomicExch(T* address, T value) {
    return std::atomic_ref<T>(*address).exchange(value);
}
