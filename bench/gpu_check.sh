#!/usr/bin/env bash
# One prepared GPU check, under 8 minutes, installing nothing: GPU tests, the op suite
# on the CuPy device, kernel bandwidth, the MLP step against PyTorch on the same card,
# gg.compile's captured step, a short training run; a summary table last. Logs go to $OUT when set.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpugrad-gpu-check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=python3
status=()

step() {  # step NAME TIMEOUT COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name"
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.log"
    status+=("$(printf '%-14s rc=%-3s %4ss' "$name" "$rc" "$((SECONDS - start))")")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)"
step info 60 $py -m gpugrad info
step gpu_tests 150 $py -m pytest -q -m gpu tests/test_kernels.py tests/test_gpu.py \
    tests/test_distributed.py -p no:cacheprovider
step op_suite_cuda 150 env GPUGRAD_DEVICE=cuda $py -m pytest -q -x -p no:cacheprovider \
    tests/test_ops.py tests/test_autograd.py tests/test_nn_optim.py tests/test_memory.py
step kernels 120 $py bench/kernels.py --sizes 1,16,64,256 --json "$out/kernels.json"
step mlp_cuda 150 $py bench/mlp_train.py --device cuda --rounds 2 --steps 50 \
    --json "$out/mlp_train_cuda.json"
# gg.compile: capture (one graph launch per replay, bit-identical to eager), then tiny and
# medium steps against PyTorch eager and PyTorch's CUDA-graph replay, memory over 10,000 replays
step compile_tests 120 $py -m pytest -q -p no:cacheprovider tests/test_compile.py
step compile_cuda 200 $py bench/compile.py --device cuda --rounds 2 --steps 50 \
    --memory-replays 10000 --json "$out/compile_cuda.json"
step profile_cuda 90 $py -m gpugrad profile --device cuda --steps 5 --trace "$out/trace.json"
step train_cuda 90 $py -m gpugrad train --device cuda --epochs 5 --json --no-progress
# issue 13: bf16/fp16 autocast, GradScaler, detect_anomaly, checkpoint, DLPack on the device;
# the bf16 throughput goal (>= 2.5x float32) and the 200-step curve; checkpoint memory
step amp_tests 90 env GPUGRAD_DEVICE=cuda $py -m pytest -q -p no:cacheprovider \
    tests/test_amp.py tests/test_anomaly.py tests/test_checkpoint.py tests/test_dlpack.py
step amp_bench 90 $py bench/amp.py --device cuda --steps 30 --curve-steps 200 \
    --json "$out/amp.json"
step ckpt_memory 60 $py bench/memory.py --checkpoint --device cuda --rounds 3
step train_amp 45 $py -m gpugrad train --device cuda --epochs 2 --amp bf16 --json --no-progress

echo
echo "=== summary"
cat "$out/gpu.txt"
for s in "${status[@]}"; do echo "$s"; done
grep -E "passed|failed|error" "$out/gpu_tests.log" | tail -1
grep -E "passed|failed|error" "$out/op_suite_cuda.log" | tail -1
grep -E "^ +256M" "$out/kernels.log" | head -20
tail -n 4 "$out/mlp_cuda.log"
grep -E "passed|failed|error" "$out/compile_tests.log" | tail -1
grep -E "^(tiny|medium)|graph|pool bytes" "$out/compile_cuda.log"
head -n 8 "$out/profile_cuda.log"
tail -n 1 "$out/train_cuda.log" | cut -c1-200
grep -E "passed|failed|error" "$out/amp_tests.log" | tail -1
tail -n 6 "$out/amp_bench.log"
tail -n 3 "$out/ckpt_memory.log"
tail -n 1 "$out/train_amp.log" | cut -c1-200
