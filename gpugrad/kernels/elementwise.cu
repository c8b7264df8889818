// Fused elementwise kernels: activation forward, activation backward, bias + activation.
// Grid-stride loops; with vec != 0 (host checked 16-byte alignment) the body moves
// 16-byte packs and a scalar loop finishes the tail.
#include "common.cuh"

template <typename T, int ACT>
__device__ __forceinline__ void act_fwd_body(const T* __restrict__ x, T* __restrict__ y,
                                             long long n, int vec, float alpha = 0.f) {
    const long long tid = gg_thread_index(), stride = gg_thread_stride();
    long long done = 0;
    if (vec) {
        const int V = 16 / sizeof(T);
        const long long packs = n / V;
        for (long long p = tid; p < packs; p += stride) {
            Pack<T> a = reinterpret_cast<const Pack<T>*>(x)[p];
            Pack<T> r;
#pragma unroll
            for (int k = 0; k < V; ++k)
                r.v[k] = from_float<T>(act_fwd<ACT>(to_float(a.v[k]), alpha));
            reinterpret_cast<Pack<T>*>(y)[p] = r;
        }
        done = packs * V;
    }
    for (long long i = done + tid; i < n; i += stride)
        y[i] = from_float<T>(act_fwd<ACT>(to_float(x[i]), alpha));
}

template <typename T, int ACT>
__device__ __forceinline__ void act_bwd_body(const T* __restrict__ g, const T* __restrict__ s,
                                             T* __restrict__ out, long long n, int vec,
                                             float alpha = 0.f) {
    const long long tid = gg_thread_index(), stride = gg_thread_stride();
    long long done = 0;
    if (vec) {
        const int V = 16 / sizeof(T);
        const long long packs = n / V;
        for (long long p = tid; p < packs; p += stride) {
            Pack<T> a = reinterpret_cast<const Pack<T>*>(g)[p];
            Pack<T> b = reinterpret_cast<const Pack<T>*>(s)[p];
            Pack<T> r;
#pragma unroll
            for (int k = 0; k < V; ++k)
                r.v[k] = from_float<T>(act_bwd<ACT>(to_float(a.v[k]), to_float(b.v[k]), alpha));
            reinterpret_cast<Pack<T>*>(out)[p] = r;
        }
        done = packs * V;
    }
    for (long long i = done + tid; i < n; i += stride)
        out[i] = from_float<T>(act_bwd<ACT>(to_float(g[i]), to_float(s[i]), alpha));
}

// y = act(x + b), x of shape (n / cols, cols), b of shape (cols,); vec also needs
// cols to be a multiple of the pack size, so that a pack never straddles two rows
template <typename T, int ACT>
__device__ __forceinline__ void bias_act_fwd_body(const T* __restrict__ x, const T* __restrict__ b,
                                                  T* __restrict__ y, long long n, int cols,
                                                  int vec, float alpha = 0.f) {
    const long long tid = gg_thread_index(), stride = gg_thread_stride();
    long long done = 0;
    if (vec) {
        const int V = 16 / sizeof(T);
        const long long packs = n / V;
        const int packs_per_row = cols / V;
        for (long long p = tid; p < packs; p += stride) {
            Pack<T> a = reinterpret_cast<const Pack<T>*>(x)[p];
            Pack<T> c = reinterpret_cast<const Pack<T>*>(b)[p % packs_per_row];
            Pack<T> r;
#pragma unroll
            for (int k = 0; k < V; ++k)
                r.v[k] = from_float<T>(act_fwd<ACT>(to_float(a.v[k]) + to_float(c.v[k]), alpha));
            reinterpret_cast<Pack<T>*>(y)[p] = r;
        }
        done = packs * V;
    }
    for (long long i = done + tid; i < n; i += stride)
        y[i] = from_float<T>(act_fwd<ACT>(to_float(x[i]) + to_float(b[i % cols]), alpha));
}

// one activation: its forward, its backward (from what its op saves) and bias + activation
#define GG_ACT_KERNELS(NAME, ACT, SUFFIX, T)                                                  \
    extern "C" __global__ void NAME##_fwd_##SUFFIX(const T* __restrict__ x, T* __restrict__ y, \
                                                   long long n, int vec) {                    \
        act_fwd_body<T, ACT>(x, y, n, vec);                                                   \
    }                                                                                         \
    extern "C" __global__ void NAME##_bwd_##SUFFIX(const T* __restrict__ g,                   \
                                                   const T* __restrict__ s,                   \
                                                   T* __restrict__ out, long long n,          \
                                                   int vec) {                                 \
        act_bwd_body<T, ACT>(g, s, out, n, vec);                                              \
    }                                                                                         \
    GG_BIAS_ACT_KERNEL(NAME, ACT, SUFFIX, T)

// y = act(x + b); with NAME none, the bias alone (the last layer of an MLP)
#define GG_BIAS_ACT_KERNEL(NAME, ACT, SUFFIX, T)                                              \
    extern "C" __global__ void bias_##NAME##_fwd_##SUFFIX(                                    \
        const T* __restrict__ x, const T* __restrict__ b, T* __restrict__ y, long long n,     \
        int cols, int vec) {                                                                  \
        bias_act_fwd_body<T, ACT>(x, b, y, n, cols, vec);                                     \
    }

GG_ACT_KERNELS(relu, ACT_RELU, f32, float)
GG_ACT_KERNELS(relu, ACT_RELU, f16, gg_half)
GG_ACT_KERNELS(relu, ACT_RELU, bf16, gg_bf16)
GG_ACT_KERNELS(gelu, ACT_GELU, f32, float)
GG_ACT_KERNELS(gelu, ACT_GELU, f16, gg_half)
GG_ACT_KERNELS(gelu, ACT_GELU, bf16, gg_bf16)
GG_ACT_KERNELS(gelu_tanh, ACT_GELU_TANH, f32, float)
GG_ACT_KERNELS(gelu_tanh, ACT_GELU_TANH, f16, gg_half)
GG_ACT_KERNELS(gelu_tanh, ACT_GELU_TANH, bf16, gg_bf16)
GG_ACT_KERNELS(tanh, ACT_TANH, f32, float)
GG_ACT_KERNELS(tanh, ACT_TANH, f16, gg_half)
GG_ACT_KERNELS(tanh, ACT_TANH, bf16, gg_bf16)
GG_ACT_KERNELS(sigmoid, ACT_SIGMOID, f32, float)
GG_ACT_KERNELS(sigmoid, ACT_SIGMOID, f16, gg_half)
GG_ACT_KERNELS(sigmoid, ACT_SIGMOID, bf16, gg_bf16)
GG_BIAS_ACT_KERNEL(none, ACT_NONE, f32, float)
GG_BIAS_ACT_KERNEL(none, ACT_NONE, f16, gg_half)
GG_BIAS_ACT_KERNEL(none, ACT_NONE, bf16, gg_bf16)

// -- rows with a parameter: the same three kernels with a trailing float alpha ----------------
#define GG_ACT_KERNELS_ALPHA(NAME, ACT, SUFFIX, T)                                            \
    extern "C" __global__ void NAME##_fwd_##SUFFIX(const T* __restrict__ x, T* __restrict__ y, \
                                                   long long n, int vec, float alpha) {       \
        act_fwd_body<T, ACT>(x, y, n, vec, alpha);                                            \
    }                                                                                         \
    extern "C" __global__ void NAME##_bwd_##SUFFIX(const T* __restrict__ g,                   \
                                                   const T* __restrict__ s,                   \
                                                   T* __restrict__ out, long long n,          \
                                                   int vec, float alpha) {                    \
        act_bwd_body<T, ACT>(g, s, out, n, vec, alpha);                                       \
    }                                                                                         \
    extern "C" __global__ void bias_##NAME##_fwd_##SUFFIX(                                    \
        const T* __restrict__ x, const T* __restrict__ b, T* __restrict__ y, long long n,     \
        int cols, int vec, float alpha) {                                                     \
        bias_act_fwd_body<T, ACT>(x, b, y, n, cols, vec, alpha);                              \
    }

// rows added with the nn.functional set
GG_ACT_KERNELS(silu, ACT_SILU, f32, float)
GG_ACT_KERNELS(silu, ACT_SILU, f16, gg_half)
GG_ACT_KERNELS(silu, ACT_SILU, bf16, gg_bf16)
GG_ACT_KERNELS_ALPHA(leaky_relu, ACT_LEAKY_RELU, f32, float)
GG_ACT_KERNELS_ALPHA(leaky_relu, ACT_LEAKY_RELU, f16, gg_half)
GG_ACT_KERNELS_ALPHA(leaky_relu, ACT_LEAKY_RELU, bf16, gg_bf16)
GG_ACT_KERNELS_ALPHA(elu, ACT_ELU, f32, float)
GG_ACT_KERNELS_ALPHA(elu, ACT_ELU, f16, gg_half)
GG_ACT_KERNELS_ALPHA(elu, ACT_ELU, bf16, gg_bf16)
