// Column sums of a (rows, cols) array: the gradient of a bias added to every row.
// Deterministic: the rows are split into chunks whose partial sums land in a float32
// workspace, then a second launch sums the chunks.
#include "common.cuh"

// blockDim (32, 8): 32 columns per block, 8 threads striding down each column;
// blockIdx.y picks a chunk of rows_per_chunk rows; partial has shape (gridDim.y, cols)
template <typename T>
__device__ __forceinline__ void col_sum_body(const T* __restrict__ g, float* __restrict__ partial,
                                             int rows, int cols, int rows_per_chunk) {
    __shared__ float part[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const int r0 = blockIdx.y * rows_per_chunk;
    const int r1 = min(rows, r0 + rows_per_chunk);
    float acc = 0.f;
    if (c < cols)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) acc += to_float(g[(long long)r * cols + c]);
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < 8; ++k) s += part[k][threadIdx.x];
        partial[(long long)blockIdx.y * cols + c] = s;
    }
}

template <typename T>
__device__ __forceinline__ void col_sum_finish_body(const float* __restrict__ partial,
                                                    T* __restrict__ out, int chunks, int cols) {
    const long long c = gg_thread_index();
    if (c < cols) {
        float s = 0.f;
        for (int k = 0; k < chunks; ++k) s += partial[(long long)k * cols + c];
        out[c] = from_float<T>(s);
    }
}

extern "C" __global__ void bias_grad_partial_f32(const float* __restrict__ g,
                                                 float* __restrict__ partial, int rows, int cols,
                                                 int rows_per_chunk) {
    col_sum_body<float>(g, partial, rows, cols, rows_per_chunk);
}

extern "C" __global__ void bias_grad_partial_f16(const gg_half* __restrict__ g,
                                                 float* __restrict__ partial, int rows, int cols,
                                                 int rows_per_chunk) {
    col_sum_body<gg_half>(g, partial, rows, cols, rows_per_chunk);
}

extern "C" __global__ void bias_grad_finish_f32(const float* __restrict__ partial,
                                                float* __restrict__ out, int chunks, int cols) {
    col_sum_finish_body<float>(partial, out, chunks, cols);
}

extern "C" __global__ void bias_grad_finish_f16(const float* __restrict__ partial,
                                                gg_half* __restrict__ out, int chunks, int cols) {
    col_sum_finish_body<gg_half>(partial, out, chunks, cols);
}

extern "C" __global__ void bias_grad_partial_bf16(const gg_bf16* __restrict__ g,
                                                  float* __restrict__ partial, int rows, int cols,
                                                  int rows_per_chunk) {
    col_sum_body<gg_bf16>(g, partial, rows, cols, rows_per_chunk);
}

extern "C" __global__ void bias_grad_finish_bf16(const float* __restrict__ partial,
                                                 gg_bf16* __restrict__ out, int chunks, int cols) {
    col_sum_finish_body<gg_bf16>(partial, out, chunks, cols);
}
