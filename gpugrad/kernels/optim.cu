// Optimizer updates, one pass per parameter, in place, no temporaries; PyTorch's formulas.
// Each update comes in two forms with one body: the per-step scalars (learning rate, bias
// corrections, ...) as kernel arguments (an eager step), or read from a small float64 buffer
// on the device (``*_dev``: a step captured in a CUDA graph, where arguments would be frozen;
// the host writes the buffer before every launch). Both round the scalars to float once, as
// the launchers' np.float32 does, so that the two forms agree bit for bit.
#include "common.cuh"

// SGD with momentum (buf, unused when momentum == 0), dampening, Nesterov, weight decay;
// maximize: the gradient negated first
template <typename T>
__device__ __forceinline__ void sgd_body(T* __restrict__ p, const T* __restrict__ g,
                                         T* __restrict__ buf, long long n, float lr,
                                         float momentum, float dampening, float weight_decay,
                                         int nesterov, int first, int maximize) {
    const long long stride = gg_thread_stride();
    for (long long i = gg_thread_index(); i < n; i += stride) {
        const float w = to_float(p[i]);
        const float gi = to_float(g[i]);
        float d = (maximize ? -gi : gi) + weight_decay * w;
        if (momentum != 0.f) {
            const float m = first ? d : momentum * to_float(buf[i]) + (1.f - dampening) * d;
            buf[i] = from_float<T>(m);
            d = nesterov ? d + momentum * m : m;
        }
        p[i] = from_float<T>(w - lr * d);
    }
}

// Adam (decoupled == 0: weight decay added to the gradient) or AdamW (decoupled == 1);
// step_size = lr / (1 - beta1^t), inv_sqrt_bias2 = 1 / sqrt(1 - beta2^t); amsgrad: the
// denominator from the running maximum vmax of v (unused otherwise); maximize: the gradient
// negated first
template <typename T>
__device__ __forceinline__ void adam_body(T* __restrict__ p, const T* __restrict__ g,
                                          T* __restrict__ m, T* __restrict__ v,
                                          T* __restrict__ vmax, long long n, float lr,
                                          float beta1, float beta2, float eps,
                                          float weight_decay, float step_size,
                                          float inv_sqrt_bias2, int decoupled, int amsgrad,
                                          int maximize) {
    const long long stride = gg_thread_stride();
    for (long long i = gg_thread_index(); i < n; i += stride) {
        float w = to_float(p[i]);
        const float gi = to_float(g[i]);
        float d = maximize ? -gi : gi;
        if (decoupled) w *= 1.f - lr * weight_decay;
        else d += weight_decay * w;
        const float mi = beta1 * to_float(m[i]) + (1.f - beta1) * d;
        const float vi = beta2 * to_float(v[i]) + (1.f - beta2) * d * d;
        m[i] = from_float<T>(mi);
        v[i] = from_float<T>(vi);
        float denom_v = vi;
        if (amsgrad) {
            // the maximum of what is stored: the rounded v, as PyTorch keeps it
            denom_v = fmaxf(to_float(vmax[i]), to_float(from_float<T>(vi)));
            vmax[i] = from_float<T>(denom_v);
        }
        p[i] = from_float<T>(w - step_size * mi / (sqrtf(denom_v) * inv_sqrt_bias2 + eps));
    }
}

#define GG_OPTIM_KERNELS(SUFFIX, T)                                                            \
    extern "C" __global__ void sgd_update_##SUFFIX(T* __restrict__ p, const T* __restrict__ g, \
                                                   T* __restrict__ buf, long long n, float lr, \
                                                   float momentum, float dampening,            \
                                                   float weight_decay, int nesterov,           \
                                                   int first, int maximize) {                  \
        sgd_body<T>(p, g, buf, n, lr, momentum, dampening, weight_decay, nesterov, first,      \
                    maximize);                                                                 \
    }                                                                                          \
    /* s: lr, momentum, dampening, weight_decay */                                             \
    extern "C" __global__ void sgd_update_dev_##SUFFIX(                                        \
        T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, long long n,          \
        const double* __restrict__ s, int nesterov, int first, int maximize) {                 \
        sgd_body<T>(p, g, buf, n, (float)s[0], (float)s[1], (float)s[2], (float)s[3],          \
                    nesterov, first, maximize);                                                \
    }                                                                                          \
    extern "C" __global__ void adam_update_##SUFFIX(                                           \
        T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,      \
        T* __restrict__ vmax, long long n, float lr, float beta1, float beta2, float eps,      \
        float weight_decay, float step_size, float inv_sqrt_bias2, int decoupled, int amsgrad, \
        int maximize) {                                                                        \
        adam_body<T>(p, g, m, v, vmax, n, lr, beta1, beta2, eps, weight_decay, step_size,      \
                     inv_sqrt_bias2, decoupled, amsgrad, maximize);                            \
    }                                                                                          \
    /* s: lr, beta1, beta2, eps, weight_decay, step_size, inv_sqrt_bias2 */                    \
    extern "C" __global__ void adam_update_dev_##SUFFIX(                                       \
        T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,      \
        T* __restrict__ vmax, long long n, const double* __restrict__ s, int decoupled,        \
        int amsgrad, int maximize) {                                                           \
        adam_body<T>(p, g, m, v, vmax, n, (float)s[0], (float)s[1], (float)s[2], (float)s[3],  \
                     (float)s[4], (float)s[5], (float)s[6], decoupled, amsgrad, maximize);     \
    }

GG_OPTIM_KERNELS(f32, float)
GG_OPTIM_KERNELS(f16, gg_half)
GG_OPTIM_KERNELS(bf16, gg_bf16)
