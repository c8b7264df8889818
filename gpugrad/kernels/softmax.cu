// Row-wise softmax family over the last axis of a (rows, cols) array, float32 arithmetic.
// Rows of up to 1024 columns: one warp per row, the row held in registers (read once,
// written once). Longer rows: one block per row, reading the row once per pass.
//
// Every kernel takes the same arguments; a mode uses what it needs:
//   a, b      inputs (x; or g and y for the backward modes)
//   labels    int64 class per row (cross-entropy); a row whose label lies outside
//             [0, cols) is ignored (PyTorch's ignore_index): loss 0, gradient row 0
//   gscale    pointer to the scalar gradient multiplier (cross-entropy backward)
//   out       (rows, cols) output; row_out: one float per row (cross-entropy loss)
#include "common.cuh"

enum {
    MODE_SOFTMAX = 0,
    MODE_LOG_SOFTMAX = 1,
    MODE_SOFTMAX_BWD = 2,      // out = y (g - sum(g y)),   a = g, b = y
    MODE_LOG_SOFTMAX_BWD = 3,  // out = g - e^y sum(g),     a = g, b = y
    MODE_XENT_FWD = 4,         // row_out = logsumexp(x) - x[label]
    MODE_XENT_BWD = 5          // out = (softmax(x) - onehot(label)) * gscale[0] * scale
};

__device__ __forceinline__ bool label_in_range(long long label, int cols) {
    return label >= 0 && label < cols;
}

// An ignored cross-entropy row: loss 0 (forward) or a zero gradient row (backward).
// Returns whether the row was ignored; the caller's threads then leave together.
template <typename T, int MODE>
__device__ __forceinline__ bool xent_row_ignored(const long long* __restrict__ labels,
                                                 T* __restrict__ out,
                                                 float* __restrict__ row_out, long long row,
                                                 int cols, int first, int stride) {
    if (MODE != MODE_XENT_FWD && MODE != MODE_XENT_BWD) return false;
    if (label_in_range(labels[row], cols)) return false;
    if (MODE == MODE_XENT_FWD) {
        if (first == 0) row_out[row] = 0.f;
    } else {
        for (int c = first; c < cols; c += stride) out[row * cols + c] = from_float<T>(0.f);
    }
    return true;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(GG_FULL_MASK, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(GG_FULL_MASK, v, o);
    return v;
}

template <typename T, int MODE, int PER_LANE>
__device__ __forceinline__ void row_warp_body(const T* __restrict__ a, const T* __restrict__ b,
                                              const long long* __restrict__ labels,
                                              const float* __restrict__ gscale,
                                              T* __restrict__ out, float* __restrict__ row_out,
                                              int rows, int cols, float scale) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // the whole warp shares the row, so it leaves together
    if (xent_row_ignored<T, MODE>(labels, out, row_out, row, cols, lane, 32)) return;
    const long long base = row * cols;
    const bool backward = MODE == MODE_SOFTMAX_BWD || MODE == MODE_LOG_SOFTMAX_BWD;
    float va[PER_LANE];
    float vb[PER_LANE];
#pragma unroll
    for (int k = 0; k < PER_LANE; ++k) {
        const int c = lane + 32 * k;
        va[k] = c < cols ? to_float(a[base + c]) : (backward ? 0.f : GG_NEG_INF);
        vb[k] = (backward && c < cols) ? to_float(b[base + c]) : 0.f;
    }
    if (backward) {
        float acc = 0.f;
#pragma unroll
        for (int k = 0; k < PER_LANE; ++k)
            acc += MODE == MODE_SOFTMAX_BWD ? va[k] * vb[k] : va[k];
        acc = warp_sum(acc);
#pragma unroll
        for (int k = 0; k < PER_LANE; ++k) {
            const int c = lane + 32 * k;
            if (c < cols) {
                const float r = MODE == MODE_SOFTMAX_BWD ? vb[k] * (va[k] - acc)
                                                         : va[k] - expf(vb[k]) * acc;
                out[base + c] = from_float<T>(r);
            }
        }
        return;
    }
    float m = GG_NEG_INF;
#pragma unroll
    for (int k = 0; k < PER_LANE; ++k) m = fmaxf(m, va[k]);
    m = warp_max(m);
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < PER_LANE; ++k) {
        const int c = lane + 32 * k;
        vb[k] = c < cols ? expf(va[k] - m) : 0.f;
        s += vb[k];
    }
    s = warp_sum(s);
    const float lse = m + logf(s);
    if (MODE == MODE_XENT_FWD) {
        const long long label = labels[row];
        float picked = 0.f;
#pragma unroll
        for (int k = 0; k < PER_LANE; ++k)
            if (lane + 32 * k == label) picked = va[k];
        picked = warp_sum(picked);
        if (lane == 0) row_out[row] = lse - picked;
        return;
    }
    const float inv = 1.f / s;
    const float gmul = MODE == MODE_XENT_BWD ? gscale[0] * scale : 0.f;
    const long long label = MODE == MODE_XENT_BWD ? labels[row] : -1;
#pragma unroll
    for (int k = 0; k < PER_LANE; ++k) {
        const int c = lane + 32 * k;
        if (c < cols) {
            float r;
            if (MODE == MODE_SOFTMAX) r = vb[k] * inv;
            else if (MODE == MODE_LOG_SOFTMAX) r = va[k] - lse;
            else r = (vb[k] * inv - (c == label ? 1.f : 0.f)) * gmul;
            out[base + c] = from_float<T>(r);
        }
    }
}

// block-wide reduction; smem holds 33 floats
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* smem) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();  // the previous reduction may still be reading smem
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < nwarps ? smem[lane] : (MAX ? GG_NEG_INF : 0.f);
        w = MAX ? warp_max(w) : warp_sum(w);
        if (lane == 0) smem[32] = w;
    }
    __syncthreads();
    return smem[32];
}

template <typename T, int MODE>
__device__ __forceinline__ void row_block_body(const T* __restrict__ a, const T* __restrict__ b,
                                               const long long* __restrict__ labels,
                                               const float* __restrict__ gscale,
                                               T* __restrict__ out, float* __restrict__ row_out,
                                               int rows, int cols, float scale) {
    __shared__ float smem[33];
    const long long row = blockIdx.x;
    if (row >= rows) return;  // the whole block shares the row
    if (xent_row_ignored<T, MODE>(labels, out, row_out, row, cols, threadIdx.x, blockDim.x))
        return;
    const long long base = row * cols;
    if (MODE == MODE_SOFTMAX_BWD || MODE == MODE_LOG_SOFTMAX_BWD) {
        float acc = 0.f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            const float g = to_float(a[base + c]);
            acc += MODE == MODE_SOFTMAX_BWD ? g * to_float(b[base + c]) : g;
        }
        acc = block_reduce<false>(acc, smem);
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            const float g = to_float(a[base + c]), y = to_float(b[base + c]);
            out[base + c] = from_float<T>(MODE == MODE_SOFTMAX_BWD ? y * (g - acc)
                                                                   : g - expf(y) * acc);
        }
        return;
    }
    float m = GG_NEG_INF;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, to_float(a[base + c]));
    m = block_reduce<true>(m, smem);
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(to_float(a[base + c]) - m);
    s = block_reduce<false>(s, smem);
    const float lse = m + logf(s);
    if (MODE == MODE_XENT_FWD) {
        if (threadIdx.x == 0) row_out[row] = lse - to_float(a[base + labels[row]]);
        return;
    }
    const float inv = 1.f / s;
    const float gmul = MODE == MODE_XENT_BWD ? gscale[0] * scale : 0.f;
    const long long label = MODE == MODE_XENT_BWD ? labels[row] : -1;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float x = to_float(a[base + c]);
        float r;
        if (MODE == MODE_SOFTMAX) r = expf(x - m) * inv;
        else if (MODE == MODE_LOG_SOFTMAX) r = x - lse;
        else r = (expf(x - m) * inv - (c == label ? 1.f : 0.f)) * gmul;
        out[base + c] = from_float<T>(r);
    }
}

#define GG_ROW_PASS a, b, labels, gscale, out, row_out, rows, cols, scale

#define GG_ROW_KERNELS(NAME, MODE, SUFFIX, TYPE)                                            \
    extern "C" __global__ void NAME##_w1_##SUFFIX(GG_ROW_ARGS_T(TYPE)) {                    \
        row_warp_body<TYPE, MODE, 1>(GG_ROW_PASS);                                          \
    }                                                                                       \
    extern "C" __global__ void NAME##_w4_##SUFFIX(GG_ROW_ARGS_T(TYPE)) {                    \
        row_warp_body<TYPE, MODE, 4>(GG_ROW_PASS);                                          \
    }                                                                                       \
    extern "C" __global__ void NAME##_w16_##SUFFIX(GG_ROW_ARGS_T(TYPE)) {                   \
        row_warp_body<TYPE, MODE, 16>(GG_ROW_PASS);                                         \
    }                                                                                       \
    extern "C" __global__ void NAME##_w32_##SUFFIX(GG_ROW_ARGS_T(TYPE)) {                   \
        row_warp_body<TYPE, MODE, 32>(GG_ROW_PASS);                                         \
    }                                                                                       \
    extern "C" __global__ void NAME##_block_##SUFFIX(GG_ROW_ARGS_T(TYPE)) {                 \
        row_block_body<TYPE, MODE>(GG_ROW_PASS);                                            \
    }

#define GG_ROW_ARGS_T(T)                                                                    \
    const T* __restrict__ a, const T* __restrict__ b, const long long* __restrict__ labels, \
        const float* __restrict__ gscale, T* __restrict__ out, float* __restrict__ row_out,  \
        int rows, int cols, float scale

#define GG_ROW_FAMILY(NAME, MODE)                \
    GG_ROW_KERNELS(NAME, MODE, f32, float)       \
    GG_ROW_KERNELS(NAME, MODE, f16, gg_half)     \
    GG_ROW_KERNELS(NAME, MODE, bf16, gg_bf16)

GG_ROW_FAMILY(softmax_fwd, MODE_SOFTMAX)
GG_ROW_FAMILY(log_softmax_fwd, MODE_LOG_SOFTMAX)
GG_ROW_FAMILY(softmax_bwd, MODE_SOFTMAX_BWD)
GG_ROW_FAMILY(log_softmax_bwd, MODE_LOG_SOFTMAX_BWD)
GG_ROW_FAMILY(softmax_xent_fwd, MODE_XENT_FWD)
GG_ROW_FAMILY(softmax_xent_bwd, MODE_XENT_BWD)

// The rows of a cross-entropy whose label lies in [0, cols), counted by one block.
__device__ __forceinline__ float block_count_in_range(const long long* __restrict__ labels,
                                                      int n, int cols, float* smem) {
    float count = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        count += label_in_range(labels[i], cols) ? 1.f : 0.f;
    return block_reduce<false>(count, smem);
}

// out[0] = sum(values[0..n)), divided (mean) by the number of rows whose label is in range
// (nan for none, as PyTorch); one block, a fixed order: deterministic
template <typename T>
__device__ __forceinline__ void xent_sum_body(const float* __restrict__ values,
                                              const long long* __restrict__ labels,
                                              T* __restrict__ out, int n, int cols, int mean) {
    __shared__ float smem[33];
    float acc = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += values[i];
    acc = block_reduce<false>(acc, smem);
    if (mean) acc /= block_count_in_range(labels, n, cols, smem);
    if (threadIdx.x == 0) out[0] = from_float<T>(acc);
}

// gscale[0] = g[0], divided (mean) by the number of rows whose label is in range: the
// backward's multiplier, from device values only (no host sync); one block
template <typename T>
__device__ __forceinline__ void xent_grad_scale_body(const T* __restrict__ g,
                                                     const long long* __restrict__ labels,
                                                     float* __restrict__ gscale, int n,
                                                     int cols, int mean) {
    __shared__ float smem[33];
    float value = to_float(g[0]);
    if (mean) value /= block_count_in_range(labels, n, cols, smem);
    if (threadIdx.x == 0) gscale[0] = value;
}

#define GG_XENT_FINISH(SUFFIX, TYPE)                                                        \
    extern "C" __global__ void xent_sum_##SUFFIX(const float* __restrict__ values,          \
                                                 const long long* __restrict__ labels,      \
                                                 TYPE* __restrict__ out, int n, int cols,    \
                                                 int mean) {                                \
        xent_sum_body<TYPE>(values, labels, out, n, cols, mean);                            \
    }                                                                                       \
    extern "C" __global__ void xent_grad_scale_##SUFFIX(const TYPE* __restrict__ g,         \
                                                        const long long* __restrict__ labels, \
                                                        float* __restrict__ gscale, int n,   \
                                                        int cols, int mean) {               \
        xent_grad_scale_body<TYPE>(g, labels, gscale, n, cols, mean);                       \
    }

GG_XENT_FINISH(f32, float)
GG_XENT_FINISH(f16, gg_half)
GG_XENT_FINISH(bf16, gg_bf16)
