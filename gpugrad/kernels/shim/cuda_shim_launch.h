// Launching: CuPy's calling convention (grid, block, arguments) checked against each
// kernel's real parameter types, recovered from its function pointer with templates.
#pragma once

#include <sys/mman.h>

#include <string>
#include <tuple>
#include <utility>

#include "cuda_shim.h"

// type codes shared with kernels/shim.py
enum { GG_F32 = 1, GG_F64 = 2, GG_I32 = 3, GG_I64 = 4, GG_F16 = 5, GG_U8 = 6, GG_BOOL = 7,
       GG_U16 = 8, GG_BF16 = 9, GG_PTR = 16 };

template <typename T> struct gg_code { static constexpr int value = -1; };
template <> struct gg_code<float> { static constexpr int value = GG_F32; };
template <> struct gg_code<double> { static constexpr int value = GG_F64; };
template <> struct gg_code<int> { static constexpr int value = GG_I32; };
template <> struct gg_code<long long> { static constexpr int value = GG_I64; };
template <> struct gg_code<_Float16> { static constexpr int value = GG_F16; };
template <> struct gg_code<unsigned char> { static constexpr int value = GG_U8; };
template <> struct gg_code<bool> { static constexpr int value = GG_BOOL; };
template <> struct gg_code<unsigned short> { static constexpr int value = GG_U16; };
template <> struct gg_code<gg_bf16> { static constexpr int value = GG_BF16; };
template <typename T> struct gg_code<T*> {
    static constexpr int value = GG_PTR | gg_code<std::remove_cv_t<T>>::value;
};

struct GGLaunch {
    unsigned int grid[3];
    unsigned int block[3];
    int nargs;
    const int* codes;          // one type code per argument
    const uint64_t* values;    // one value per argument, its bytes at the start
};

namespace gg_shim {

inline std::string last_error;
constexpr size_t kStack = 64 * 1024;
inline char* stacks = nullptr;
inline size_t stacks_count = 0;

inline std::string code_name(int code) {
    static const char* names[] = {"?", "float32", "float64", "int32", "int64", "float16",
                                  "uint8", "bool", "uint16", "bfloat16"};
    const int base = code & 15;
    const char* name = names[base > 0 && base < 10 ? base : 0];
    return (code & GG_PTR) ? std::string("pointer to ") + name : std::string(name);
}

template <typename T> inline T unpack(uint64_t bits) {
    if constexpr (std::is_pointer_v<T>) {
        return reinterpret_cast<T>(static_cast<uintptr_t>(bits));
    } else {
        T v;
        std::memcpy(&v, &bits, sizeof(T));
        return v;
    }
}

template <typename... A, size_t... I>
bool check(const char* name, const GGLaunch* l, std::index_sequence<I...>) {
    constexpr int expected[] = {gg_code<A>::value..., 0};
    if (l->nargs != (int)sizeof...(A)) {
        last_error = std::string(name) + ": expects " + std::to_string(sizeof...(A)) +
                     " arguments, got " + std::to_string(l->nargs);
        return false;
    }
    for (int i = 0; i < (int)sizeof...(A); ++i) {
        if (expected[i] != l->codes[i]) {
            last_error = std::string(name) + ": argument " + std::to_string(i) + " is a " +
                         code_name(expected[i]) + " but a " + code_name(l->codes[i]) +
                         " was passed";
            return false;
        }
    }
    return true;
}

inline void* trampoline_target = nullptr;
inline void (*trampoline_call)(void*) = nullptr;

// a fiber's first frame: run the kernel body for this thread, then report done
inline void fiber_main() {
    trampoline_call(trampoline_target);
    Fiber& f = block_->fibers[block_->current];
    f.wait = DONE;
    _longjmp(block_->scheduler, 1);
}

inline bool ensure_stacks(size_t n) {
    if (n <= stacks_count) return true;
    if (stacks) munmap(stacks, stacks_count * kStack);
    void* p = mmap(nullptr, n * kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        stacks = nullptr;
        stacks_count = 0;
        return false;
    }
    stacks = static_cast<char*>(p);
    stacks_count = n;
    return true;
}

inline void set_thread(int t) {
    threadIdx.x = t % blockDim.x;
    threadIdx.y = (t / blockDim.x) % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

// run every thread of the current block to completion; false on a broken barrier
inline bool run_block(const char* name) {
    Block& b = *block_;
    for (auto& f : b.fibers) {
        f.wait = RUNNING;
        f.started = false;
    }
    ucontext_t here;
    for (;;) {
        for (int t = 0; t < b.threads; ++t) {
            Fiber& f = b.fibers[t];
            if (f.wait != RUNNING) continue;
            b.current = t;
            set_thread(t);
            if (_setjmp(b.scheduler) == 0) {
                if (!f.started) {
                    f.started = true;
                    getcontext(&f.context);
                    f.context.uc_stack.ss_sp = stacks + (size_t)t * kStack;
                    f.context.uc_stack.ss_size = kStack;
                    f.context.uc_link = nullptr;
                    makecontext(&f.context, fiber_main, 0);
                    swapcontext(&here, &f.context);
                } else {
                    _longjmp(f.jump, 1);
                }
            }
        }
        // every fiber is done or waiting: release a warp or the block, or report
        int done = 0, at_block = 0;
        bool released = false;
        for (int w = 0; w * 32 < b.threads; ++w) {
            const int lo = w * 32, hi = std::min(b.threads, lo + 32);
            int warp_wait = 0, warp_done = 0;
            for (int t = lo; t < hi; ++t) {
                warp_wait += b.fibers[t].wait == AT_WARP;
                warp_done += b.fibers[t].wait == DONE;
            }
            if (warp_wait && warp_wait + warp_done == hi - lo) {
                if (warp_done) {
                    last_error = std::string(name) + ": a warp shuffle or __syncwarp reached by "
                                 "only part of warp " + std::to_string(w) + " of block (" +
                                 std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) +
                                 ", " + std::to_string(blockIdx.z) + ")";
                    return false;
                }
                for (int t = lo; t < hi; ++t) b.fibers[t].wait = RUNNING;
                released = true;
            }
        }
        if (released) continue;
        for (auto& f : b.fibers) {
            done += f.wait == DONE;
            at_block += f.wait == AT_BLOCK;
        }
        if (done == b.threads) return true;
        if (at_block == b.threads) {
            for (auto& f : b.fibers) f.wait = RUNNING;
            continue;
        }
        last_error = std::string(name) + ": __syncthreads reached by only " +
                     std::to_string(at_block) + " of the " + std::to_string(b.threads) +
                     " threads of block (" + std::to_string(blockIdx.x) + ", " +
                     std::to_string(blockIdx.y) + ", " + std::to_string(blockIdx.z) + ")";
        return false;
    }
}

template <typename... A>
int launch(const char* name, void (*kernel)(A...), const GGLaunch* l) {
    if (!check<A...>(name, l, std::index_sequence_for<A...>{})) return 1;
    const int threads = (int)(l->block[0] * l->block[1] * l->block[2]);
    if (threads < 1 || threads > 1024) {
        last_error = std::string(name) + ": a block of " + std::to_string(threads) +
                     " threads (1 to 1024 allowed)";
        return 1;
    }
    if (!ensure_stacks((size_t)threads)) {
        last_error = "out of memory for fiber stacks";
        return 1;
    }
    auto args = [&]<size_t... I>(std::index_sequence<I...>) {
        return std::tuple<A...>{unpack<A>(l->values[I])...};
    }(std::index_sequence_for<A...>{});
    struct Call {
        void (*kernel)(A...);
        std::tuple<A...>* args;
        static void run(void* self) {
            Call* c = static_cast<Call*>(self);
            std::apply(c->kernel, *c->args);
        }
    } call{kernel, &args};
    Block block;
    block.fibers.resize((size_t)threads);
    block.threads = threads;
    block_ = &block;
    trampoline_target = &call;
    trampoline_call = &Call::run;
    blockDim = dim3{l->block[0], l->block[1], l->block[2]};
    gridDim = dim3{l->grid[0], l->grid[1], l->grid[2]};
    for (unsigned z = 0; z < l->grid[2]; ++z)
        for (unsigned y = 0; y < l->grid[1]; ++y)
            for (unsigned x = 0; x < l->grid[0]; ++x) {
                blockIdx = dim3{x, y, z};
                if (!run_block(name)) {
                    block_ = nullptr;
                    return 1;
                }
            }
    block_ = nullptr;
    return 0;
}

}  // namespace gg_shim

#define GG_EXPORT extern "C" __attribute__((visibility("default")))

GG_EXPORT const char* gg_last_error() { return gg_shim::last_error.c_str(); }

#define GG_REGISTER(NAME) \
    GG_EXPORT int gg_launch__##NAME(const GGLaunch* l) { return gg_shim::launch(#NAME, NAME, l); }
