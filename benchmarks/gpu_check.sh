#!/usr/bin/env bash
# One call on a GPU machine (under 8 minutes): the GPU tests, then clean and scan on resnet18/resnet50 at
# 224x224. Needs bdscan's packages and Fashion-MNIST's IDX files in $FMNIST_ROOT (carry them along).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# only the device tests: collecting the whole suite needs test-only packages a GPU image may lack
python3 -m pytest -q -rs tests/test_gpu.py tests/test_devices.py || echo "device tests failed (rc $?); the measurement runs anyway"
PYTHONUNBUFFERED=1 timeout 420 python3 benchmarks/gpu_check.py "$@"
