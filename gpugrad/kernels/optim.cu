// Optimizer updates, one pass per parameter, in place, no temporaries; PyTorch's formulas.
#include "common.cuh"

// SGD with momentum (buf, unused when momentum == 0), dampening, Nesterov, weight decay
template <typename T>
__device__ __forceinline__ void sgd_body(T* __restrict__ p, const T* __restrict__ g,
                                         T* __restrict__ buf, long long n, float lr,
                                         float momentum, float dampening, float weight_decay,
                                         int nesterov, int first) {
    const long long stride = gg_thread_stride();
    for (long long i = gg_thread_index(); i < n; i += stride) {
        const float w = to_float(p[i]);
        float d = to_float(g[i]) + weight_decay * w;
        if (momentum != 0.f) {
            const float m = first ? d : momentum * to_float(buf[i]) + (1.f - dampening) * d;
            buf[i] = from_float<T>(m);
            d = nesterov ? d + momentum * m : m;
        }
        p[i] = from_float<T>(w - lr * d);
    }
}

// Adam (decoupled == 0: weight decay added to the gradient) or AdamW (decoupled == 1);
// step_size = lr / (1 - beta1^t), inv_sqrt_bias2 = 1 / sqrt(1 - beta2^t)
template <typename T>
__device__ __forceinline__ void adam_body(T* __restrict__ p, const T* __restrict__ g,
                                          T* __restrict__ m, T* __restrict__ v, long long n,
                                          float lr, float beta1, float beta2, float eps,
                                          float weight_decay, float step_size,
                                          float inv_sqrt_bias2, int decoupled) {
    const long long stride = gg_thread_stride();
    for (long long i = gg_thread_index(); i < n; i += stride) {
        float w = to_float(p[i]);
        float d = to_float(g[i]);
        if (decoupled) w *= 1.f - lr * weight_decay;
        else d += weight_decay * w;
        const float mi = beta1 * to_float(m[i]) + (1.f - beta1) * d;
        const float vi = beta2 * to_float(v[i]) + (1.f - beta2) * d * d;
        m[i] = from_float<T>(mi);
        v[i] = from_float<T>(vi);
        p[i] = from_float<T>(w - step_size * mi / (sqrtf(vi) * inv_sqrt_bias2 + eps));
    }
}

#define GG_OPTIM_KERNELS(SUFFIX, T)                                                            \
    extern "C" __global__ void sgd_update_##SUFFIX(T* __restrict__ p, const T* __restrict__ g, \
                                                   T* __restrict__ buf, long long n, float lr, \
                                                   float momentum, float dampening,            \
                                                   float weight_decay, int nesterov,           \
                                                   int first) {                                \
        sgd_body<T>(p, g, buf, n, lr, momentum, dampening, weight_decay, nesterov, first);     \
    }                                                                                          \
    extern "C" __global__ void adam_update_##SUFFIX(                                           \
        T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,      \
        long long n, float lr, float beta1, float beta2, float eps, float weight_decay,        \
        float step_size, float inv_sqrt_bias2, int decoupled) {                                \
        adam_body<T>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step_size,            \
                     inv_sqrt_bias2, decoupled);                                               \
    }

GG_OPTIM_KERNELS(f32, float)
GG_OPTIM_KERNELS(f16, gg_half)
GG_OPTIM_KERNELS(bf16, gg_bf16)
