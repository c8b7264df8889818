"""The CPU shim itself: launches checked against parameter types, broken barriers
reported, shared memory and shuffles behaving as on a GPU."""
import numpy as np
import pytest

from gpugrad.kernels import shim

pytestmark = pytest.mark.skipif(not shim.available(), reason="no g++")

SOURCE = r'''
#include "common.cuh"

extern "C" __global__ void block_reverse(const float* x, float* y, int n) {
    __shared__ float tile[256];
    const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    tile[t] = i < n ? x[i] : 0.f;
    __syncthreads();
    const int j = blockIdx.x * blockDim.x + (blockDim.x - 1 - t);
    if (j < n) y[j] = tile[t];
}

extern "C" __global__ void warp_total(const float* x, float* y) {
    float v = x[threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    y[threadIdx.x] = v;
}

extern "C" __global__ void half_barrier(float* y) {
    if (threadIdx.x < 16) __syncthreads();
    y[threadIdx.x] = 1.f;
}

extern "C" __global__ void atomic_count(int* counter) {
    atomicAdd(counter, 1);
}
'''


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    path = tmp_path_factory.mktemp("shim") / "probe.cu"
    path.write_text(SOURCE)
    return shim.ShimModule(str(path))


def test_shared_memory_and_barrier(module):
    x = np.arange(300, dtype=np.float32)
    y = np.full(300, np.nan, dtype=np.float32)
    module.get_function("block_reverse")((2,), (256,), (x, y, np.int32(300)))
    assert np.array_equal(y[:256], x[:256][::-1])
    # the second block's lanes 212..255 read tile slots past n, which hold zeros
    assert np.array_equal(y[256:], np.zeros(44, np.float32))


def test_warp_shuffles_reduce_across_lanes(module):
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, dtype=np.float32)
    module.get_function("warp_total")((1,), (64,), (x, y))
    assert np.all(y[:32] == x[:32].sum()) and np.all(y[32:] == x[32:].sum())


def test_a_barrier_reached_by_part_of_the_block_is_reported(module):
    y = np.zeros(32, dtype=np.float32)
    with pytest.raises(RuntimeError, match="__syncthreads reached by only 16 of the 32"):
        module.get_function("half_barrier")((1,), (32,), (y,))


def test_atomics(module):
    counter = np.zeros(1, dtype=np.int32)
    module.get_function("atomic_count")((3,), (100,), (counter,))
    assert counter[0] == 300


def test_argument_types_are_checked_like_cupys_conversion(module):
    x = np.zeros(8, dtype=np.float32)
    y = np.zeros(8, dtype=np.float32)
    fn = module.get_function("block_reverse")
    with pytest.raises(RuntimeError, match="argument 2 is a int32 but a int64 was passed"):
        fn((1,), (8,), (x, y, 8))          # a Python int arrives as long long
    with pytest.raises(RuntimeError, match="argument 1 is a pointer to float32 but a "
                                           "pointer to float64"):
        fn((1,), (8,), (x, y.astype(np.float64), np.int32(8)))
    with pytest.raises(RuntimeError, match="expects 3 arguments, got 2"):
        fn((1,), (8,), (x, y))


def test_kernel_names_are_found_after_macro_expansion():
    names = shim.kernel_names(shim.os.path.join(shim.KERNEL_DIR, "elementwise.cu"))
    assert {"relu_fwd_f32", "relu_bwd_f16", "bias_gelu_fwd_f32"} <= set(names)
