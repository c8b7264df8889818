#!/usr/bin/env bash
# The prepared GPU check, installing nothing, in two parts of under 8 minutes each (the
# step timeouts of a part add up to less), one device command apiece:
#   bash bench/gpu_check.sh core      GPU tests (every kernel against its twin), the op suite
#                                     on the CuPy device, kernel bandwidth, the MLP step
#                                     against PyTorch, gg.compile's captured step, training
#   bash bench/gpu_check.sh extended  mixed precision, anomaly, checkpointing, DLPack, NCCL,
#                                     the profiler
# A summary table comes last. Logs go to $OUT when set.
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

part="${1:-core}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)"
if [ "$part" = core ]; then
    step info 30 $py -m gpugrad info
    step gpu_tests 90 $py -m pytest -q -m gpu tests/test_kernels.py tests/test_gpu.py \
        -p no:cacheprovider
    # first order on the device (the second-order checks run on the CPU in CI)
    step op_suite_cuda 100 env GPUGRAD_DEVICE=cuda $py -m pytest -q -x -p no:cacheprovider \
        tests/test_ops.py -k "cpu- and not second_order" tests/test_autograd.py \
        tests/test_nn_optim.py tests/test_memory.py tests/test_missing_names.py
    step kernels 45 $py bench/kernels.py --sizes 1,64,256 --json "$out/kernels.json"
    step mlp_cuda 50 $py bench/mlp_train.py --device cuda --rounds 2 --steps 30 \
        --json "$out/mlp_train_cuda.json"
    # gg.compile: capture (one graph launch per replay, bit-identical to eager), then tiny and
    # medium steps against PyTorch eager and PyTorch's CUDA-graph replay, memory over replays
    step compile_tests 45 $py -m pytest -q -p no:cacheprovider tests/test_compile.py
    step compile_cuda 70 $py bench/compile.py --device cuda --rounds 2 --steps 30 \
        --memory-replays 10000 --json "$out/compile_cuda.json"
    step train_cuda 40 $py -m gpugrad train --device cuda --epochs 3 --json --no-progress
else
    # issue 13: bf16/fp16 autocast, GradScaler, detect_anomaly, checkpoint, DLPack on the
    # device; the bf16 throughput goal (>= 2.5x float32) and the 200-step curve; memory
    step amp_tests 80 env GPUGRAD_DEVICE=cuda $py -m pytest -q -p no:cacheprovider \
        tests/test_amp.py tests/test_anomaly.py tests/test_checkpoint.py tests/test_dlpack.py
    step amp_bench 90 $py bench/amp.py --device cuda --steps 30 --curve-steps 200 \
        --json "$out/amp.json"
    step ckpt_memory 60 $py bench/memory.py --checkpoint --device cuda --rounds 3
    step train_amp 40 $py -m gpugrad train --device cuda --epochs 2 --amp bf16 --json \
        --no-progress
    step nccl 60 $py -m pytest -q -m gpu -p no:cacheprovider tests/test_distributed.py
    step profile_cuda 60 $py -m gpugrad profile --device cuda --steps 5 --trace "$out/trace.json"
fi
echo
echo "=== summary"
cat "$out/gpu.txt"
for s in "${status[@]}"; do echo "$s"; done
for log in gpu_tests op_suite_cuda compile_tests amp_tests nccl; do
    [ -f "$out/$log.log" ] && echo "$log: $(grep -E "passed|failed|error" "$out/$log.log" | tail -1)"
done
grep -E "^ +256M" "$out/kernels.log" | head -20 2>/dev/null
tail -n 4 "$out/mlp_cuda.log" 2>/dev/null
grep -E "^(tiny|medium)|graph|pool bytes" "$out/compile_cuda.log" 2>/dev/null
head -n 8 "$out/profile_cuda.log" 2>/dev/null
tail -n 1 "$out/train_cuda.log" | cut -c1-200 2>/dev/null
tail -n 6 "$out/amp_bench.log" 2>/dev/null
tail -n 3 "$out/ckpt_memory.log" 2>/dev/null
tail -n 1 "$out/train_amp.log" | cut -c1-200 2>/dev/null
