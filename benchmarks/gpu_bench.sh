#!/usr/bin/env bash
# Issue 4 on a GPU machine, in one call (under 10 minutes on an H100/H200 with 16 cores): trains the resnet18 lab
# models there, then runs benchmarks.run on CUDA (peers and bdscan, both budgets), model groups in parallel.
# Needs: the small cached lab models and sample folders in .gpu_carry/cache.tar, Fashion-MNIST's IDX files in
# .fmnist/ (carry both), and $OUT for the logs and raw rows. Afterwards: benchmarks/RESULTS_GPU.md.
set -uo pipefail
cd "$(dirname "$0")/.."
export BDSCAN_FMNIST_ROOT="$PWD/.fmnist" PYTHONUNBUFFERED=1 BENCH_DEVICE=cuda
OUT="${OUT:-/tmp/gpu-bench}"
mkdir -p "$OUT" benchmarks/cache
tar -xf .gpu_carry/cache.tar -C benchmarks/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/zoo.log"
python3 -m benchmarks.zoo --device cuda wanet-resnet18 badnets-resnet18 clean-resnet18 >>"$OUT/zoo.log" 2>&1
groups=("wanet-resnet18" "badnets-resnet18" "badnets-cnn blended-cnn" "wanet-cnn sig-cnn" "trojan-cnn lf-cnn"
        "inputaware-cnn badnets-vgg" "blended-vgg sig-vgg")
i=0
for g in "${groups[@]}"; do
  # shellcheck disable=SC2086
  timeout "${BENCH_TIMEOUT:-420}" python3 -m benchmarks.run --fresh --with-5pct --json "$OUT/rows-$i.json" $g \
    >"$OUT/run-$i.log" 2>&1 &
  i=$((i + 1))
done
wait
python3 -m benchmarks.run --merge-gpu "$OUT"/rows-*.json >/dev/null && cp benchmarks/RESULTS_GPU.md benchmarks/results_gpu.json "$OUT/"
# the run logs come back as one file (8 files at most come back)
tail -n 5 "$OUT"/run-*.log >"$OUT/runs-tail.log"; cat "$OUT"/run-*.log >"$OUT/runs.log"; rm -f "$OUT"/run-*.log
