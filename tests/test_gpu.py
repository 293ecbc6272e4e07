"""The CUDA path, run for real on a GPU (skipped elsewhere; benchmarks/gpu_check.sh runs these on a GPU machine)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from bdscan.cli.app import app
from bdscan.devices import autocast, prepare, resolve_device, with_backoff
from tests.conftest import EXAMPLES, measure_example

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

MODEL = EXAMPLES / "models" / "badnets-cnn.safetensors"
SAMPLES = EXAMPLES / "samples"


def test_auto_is_cuda_and_autocast_is_bf16():
    dev = resolve_device("auto")
    assert dev.type == "cuda"
    layer = prepare(torch.nn.Conv2d(3, 8, 3), dev)
    with autocast(dev):
        out = layer(torch.rand(2, 3, 16, 16, device=dev).to(memory_format=torch.channels_last))
    assert out.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)


def test_backoff_on_a_real_out_of_memory():
    total = torch.cuda.get_device_properties(0).total_memory
    said = []

    def fn(batch):  # asks for batch/4 of the card: 64 and down to 8 cannot fit, 2 can
        t = torch.empty(batch * total // 4, dtype=torch.uint8, device="cuda")
        del t
        return batch

    got = with_backoff(fn, 64, say=said.append)
    assert got <= 3 and said and "retrying with batch size" in said[-1]


def test_clean_and_scan_on_cuda(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["clean", str(MODEL), "--samples", str(SAMPLES), "--target-class", "0",
                                 "--out", str(out), "--format", "json", "--device", "cuda", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "removed" and doc["device"].startswith("cuda")
    ref, res = measure_example(out / "badnets-cnn.safetensors")
    assert res["asr"] <= 0.02, f"attack success after cleaning on CUDA {res['asr']:.2%}"
    assert res["ca"] >= ref["ca"] - 0.01, f"clean accuracy {ref['ca']:.2%} -> {res['ca']:.2%}"

    r = CliRunner().invoke(app, ["scan", str(MODEL), "--samples", str(SAMPLES), "--format", "json",
                                 "--device", "cuda"])
    assert r.exit_code == 1, r.output  # suspected
    model = json.loads(r.stdout)["models"][0]
    assert model["suspected"] and model["target_class"] == 0
