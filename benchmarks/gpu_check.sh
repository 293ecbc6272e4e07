#!/usr/bin/env bash
# One call on a GPU machine (under 8 minutes): GPU-marked tests, then clean and scan on resnet18/resnet50 at
# 224x224. Needs the venv's packages and Fashion-MNIST's IDX files in $FMNIST_ROOT (carry them along).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -m pytest -q -m gpu tests || [ $? -eq 5 ]
PYTHONUNBUFFERED=1 timeout 420 python benchmarks/gpu_check.py
