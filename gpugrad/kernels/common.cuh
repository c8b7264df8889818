// Shared by every kernel file: float16 and bfloat16 storage with float32 arithmetic,
// 16-byte packs, the activations. No CUDA headers, so NVRTC needs no include path but this folder's.
#pragma once

#ifndef GPUGRAD_CPU_SHIM
typedef unsigned short gg_half;   // float16 bits; converted with PTX, not cuda_fp16.h

__device__ __forceinline__ float gg_h2f(gg_half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ gg_half gg_f2h(float f) {
    gg_half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// bfloat16 bits in a type of its own, so that overloads tell it from float16; the
// conversion rounds to nearest even in one PTX instruction (sm_80 and later)
struct gg_bf16 {
    unsigned short bits;
};

__device__ __forceinline__ unsigned short gg_f2bf_bits(float f) {
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#endif

#define GG_NEG_INF (__int_as_float(0xff800000))
#define GG_FULL_MASK 0xffffffffu

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(gg_half x) { return gg_h2f(x); }
__device__ __forceinline__ float to_float(gg_bf16 x) {
    return __int_as_float(((unsigned int)x.bits) << 16);
}

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ gg_half from_float<gg_half>(float x) { return gg_f2h(x); }
template <> __device__ __forceinline__ gg_bf16 from_float<gg_bf16>(float x) {
    gg_bf16 r;
    r.bits = gg_f2bf_bits(x);
    return r;
}

// 16 bytes of T: four floats or eight halves (float16 or bfloat16), loaded and stored in
// one instruction
template <typename T> struct alignas(16) Pack {
    T v[16 / sizeof(T)];
};

// The rows of the activation table (gpugrad/ops/activation.py): ACT_GELU is the exact
// x/2 (1 + erf(x / sqrt 2)), ACT_GELU_TANH its tanh form
enum { ACT_NONE = 0, ACT_RELU = 1, ACT_GELU_TANH = 2, ACT_TANH = 3, ACT_SIGMOID = 4, ACT_GELU = 5 };
// rows added with the nn.functional set; ALPHA is a row's parameter (leaky_relu's
// negative_slope, elu's alpha), passed to its kernels as a trailing float
enum { ACT_SILU = 6, ACT_LEAKY_RELU = 7, ACT_ELU = 8 };

__device__ __forceinline__ float gg_sigmoid(float z) {
    float e = expf(-fabsf(z));
    return z >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
}

#define GG_GELU_K 0.7978845608028654f
#define GG_GELU_C 0.044715f
#define GG_SQRT1_2 0.7071067811865476f
#define GG_INV_SQRT_2PI 0.3989422804014327f

template <int ACT> __device__ __forceinline__ float act_fwd(float z, float alpha = 0.f) {
    if (ACT == ACT_SILU) return z * gg_sigmoid(z);
    if (ACT == ACT_LEAKY_RELU) return z > 0.f ? z : alpha * z;
    if (ACT == ACT_ELU) return z > 0.f ? z : alpha * expm1f(z);
    if (ACT == ACT_RELU) return z > 0.f ? z : 0.f;
    if (ACT == ACT_GELU_TANH) return 0.5f * z * (1.f + tanhf(GG_GELU_K * (z + GG_GELU_C * z * z * z)));
    if (ACT == ACT_GELU) return 0.5f * z * (1.f + erff(z * GG_SQRT1_2));
    if (ACT == ACT_TANH) return tanhf(z);
    if (ACT == ACT_SIGMOID) {
        float e = expf(-fabsf(z));
        return z >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
    }
    return z;
}

// g times the activation's derivative, from what its op saved: the output y for relu,
// tanh and sigmoid, the input x for both GELUs, silu, leaky_relu and elu
template <int ACT> __device__ __forceinline__ float act_bwd(float g, float s, float alpha = 0.f) {
    if (ACT == ACT_SILU) {
        const float sg = gg_sigmoid(s);
        return g * sg * (1.f + s * (1.f - sg));
    }
    if (ACT == ACT_LEAKY_RELU) return s > 0.f ? g : g * alpha;
    if (ACT == ACT_ELU) return s > 0.f ? g : g * alpha * expf(s);
    if (ACT == ACT_RELU) return s > 0.f ? g : 0.f;
    if (ACT == ACT_TANH) return g * (1.f - s * s);
    if (ACT == ACT_SIGMOID) return g * s * (1.f - s);
    if (ACT == ACT_GELU)
        return g * (0.5f * (1.f + erff(s * GG_SQRT1_2)) + s * GG_INV_SQRT_2PI * expf(-0.5f * s * s));
    if (ACT == ACT_GELU_TANH) {
        float t = tanhf(GG_GELU_K * (s + GG_GELU_C * s * s * s));
        float du = GG_GELU_K * (1.f + 3.f * GG_GELU_C * s * s);
        return g * (0.5f * (1.f + t) + 0.5f * s * (1.f - t * t) * du);
    }
    return g;
}

__device__ __forceinline__ long long gg_thread_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long gg_thread_stride() {
    return (long long)gridDim.x * blockDim.x;
}
