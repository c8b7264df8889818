// Layer normalisation over the last axis of a (rows, cols) array, float32 arithmetic.
// Rows of up to 1024 columns: one warp per row, the row held in registers (read once,
// written once). Longer rows: one block per row, reading the row once per pass.
//
// Every kernel takes the same arguments; a mode uses what it needs:
//   a       x (forward) or the output's cotangent g (backward)
//   x       the input (backward; the forward passes a again)
//   w, b    the affine weight and bias of cols elements, used where has_w / has_b
//   out     (rows, cols) output
// forward:  out = (x - mean) r * w + b,          r = 1 / sqrt(var + eps)
// backward: out = r (q - mean(q) - xh mean(q xh)), q = g * w, xh = (x - mean) r
#include "common.cuh"

enum { NORM_FWD = 0, NORM_BWD = 1 };

__device__ __forceinline__ float norm_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(GG_FULL_MASK, v, o);
    return v;
}

template <typename T, int MODE, int PER_LANE>
__device__ __forceinline__ void norm_warp_body(const T* __restrict__ a, const T* __restrict__ x,
                                               const T* __restrict__ w,
                                               const T* __restrict__ b, T* __restrict__ out,
                                               int rows, int cols, float eps, int has_w,
                                               int has_b) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // the whole warp shares the row, so it leaves together
    const long long base = row * cols;
    const T* __restrict__ xin = MODE == NORM_FWD ? a : x;
    float vx[PER_LANE];
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < PER_LANE; ++k) {
        const int c = lane + 32 * k;
        vx[k] = c < cols ? to_float(xin[base + c]) : 0.f;
        s += vx[k];
    }
    const float mean = norm_warp_sum(s) / cols;
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < PER_LANE; ++k) {
        const int c = lane + 32 * k;
        vx[k] = c < cols ? vx[k] - mean : 0.f;
        ss += vx[k] * vx[k];
    }
    const float r = 1.f / sqrtf(norm_warp_sum(ss) / cols + eps);
    if (MODE == NORM_FWD) {
#pragma unroll
        for (int k = 0; k < PER_LANE; ++k) {
            const int c = lane + 32 * k;
            if (c < cols) {
                float y = vx[k] * r;
                if (has_w) y *= to_float(w[c]);
                if (has_b) y += to_float(b[c]);
                out[base + c] = from_float<T>(y);
            }
        }
        return;
    }
    // backward: vx becomes xh, vq holds q = g w
    float vq[PER_LANE];
    float sq = 0.f, sqx = 0.f;
#pragma unroll
    for (int k = 0; k < PER_LANE; ++k) {
        const int c = lane + 32 * k;
        vx[k] *= r;
        vq[k] = c < cols ? to_float(a[base + c]) * (has_w ? to_float(w[c]) : 1.f) : 0.f;
        sq += vq[k];
        sqx += vq[k] * vx[k];
    }
    const float mq = norm_warp_sum(sq) / cols, mqx = norm_warp_sum(sqx) / cols;
#pragma unroll
    for (int k = 0; k < PER_LANE; ++k) {
        const int c = lane + 32 * k;
        if (c < cols) out[base + c] = from_float<T>(r * (vq[k] - mq - vx[k] * mqx));
    }
}

// block-wide sum; smem holds 33 floats
__device__ __forceinline__ float norm_block_sum(float v, float* smem) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    v = norm_warp_sum(v);
    __syncthreads();  // the previous reduction may still be reading smem
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < nwarps ? smem[lane] : 0.f;
        t = norm_warp_sum(t);
        if (lane == 0) smem[32] = t;
    }
    __syncthreads();
    return smem[32];
}

template <typename T, int MODE>
__device__ __forceinline__ void norm_block_body(const T* __restrict__ a, const T* __restrict__ x,
                                                const T* __restrict__ w,
                                                const T* __restrict__ b, T* __restrict__ out,
                                                int rows, int cols, float eps, int has_w,
                                                int has_b) {
    __shared__ float smem[33];
    const long long row = blockIdx.x;
    if (row >= rows) return;  // the whole block shares the row
    const long long base = row * cols;
    const T* __restrict__ xin = MODE == NORM_FWD ? a : x;
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += to_float(xin[base + c]);
    const float mean = norm_block_sum(s, smem) / cols;
    float ss = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = to_float(xin[base + c]) - mean;
        ss += d * d;
    }
    const float r = 1.f / sqrtf(norm_block_sum(ss, smem) / cols + eps);
    if (MODE == NORM_FWD) {
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            float y = (to_float(xin[base + c]) - mean) * r;
            if (has_w) y *= to_float(w[c]);
            if (has_b) y += to_float(b[c]);
            out[base + c] = from_float<T>(y);
        }
        return;
    }
    float sq = 0.f, sqx = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float q = to_float(a[base + c]) * (has_w ? to_float(w[c]) : 1.f);
        sq += q;
        sqx += q * (to_float(xin[base + c]) - mean) * r;
    }
    const float mq = norm_block_sum(sq, smem) / cols;
    const float mqx = norm_block_sum(sqx, smem) / cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float q = to_float(a[base + c]) * (has_w ? to_float(w[c]) : 1.f);
        const float xh = (to_float(xin[base + c]) - mean) * r;
        out[base + c] = from_float<T>(r * (q - mq - xh * mqx));
    }
}

#define GG_NORM_ARGS_T(T)                                                                    \
    const T* __restrict__ a, const T* __restrict__ x, const T* __restrict__ w,               \
        const T* __restrict__ b, T* __restrict__ out, int rows, int cols, float eps,         \
        int has_w, int has_b

#define GG_NORM_PASS a, x, w, b, out, rows, cols, eps, has_w, has_b

#define GG_NORM_KERNELS(NAME, MODE, SUFFIX, TYPE)                                           \
    extern "C" __global__ void NAME##_w1_##SUFFIX(GG_NORM_ARGS_T(TYPE)) {                   \
        norm_warp_body<TYPE, MODE, 1>(GG_NORM_PASS);                                        \
    }                                                                                       \
    extern "C" __global__ void NAME##_w4_##SUFFIX(GG_NORM_ARGS_T(TYPE)) {                   \
        norm_warp_body<TYPE, MODE, 4>(GG_NORM_PASS);                                        \
    }                                                                                       \
    extern "C" __global__ void NAME##_w16_##SUFFIX(GG_NORM_ARGS_T(TYPE)) {                  \
        norm_warp_body<TYPE, MODE, 16>(GG_NORM_PASS);                                       \
    }                                                                                       \
    extern "C" __global__ void NAME##_w32_##SUFFIX(GG_NORM_ARGS_T(TYPE)) {                  \
        norm_warp_body<TYPE, MODE, 32>(GG_NORM_PASS);                                       \
    }                                                                                       \
    extern "C" __global__ void NAME##_block_##SUFFIX(GG_NORM_ARGS_T(TYPE)) {                \
        norm_block_body<TYPE, MODE>(GG_NORM_PASS);                                          \
    }

GG_NORM_KERNELS(layer_norm_fwd, NORM_FWD, f32, float)
GG_NORM_KERNELS(layer_norm_fwd, NORM_FWD, f16, gg_half)
GG_NORM_KERNELS(layer_norm_fwd, NORM_FWD, bf16, gg_bf16)
GG_NORM_KERNELS(layer_norm_bwd, NORM_BWD, f32, float)
GG_NORM_KERNELS(layer_norm_bwd, NORM_BWD, f16, gg_half)
GG_NORM_KERNELS(layer_norm_bwd, NORM_BWD, bf16, gg_bf16)
