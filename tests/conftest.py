"""Shared fixtures: tiny real models with perturbed weights and statistics, written to real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bdscan.model import ModelSpec, write_model
from bdscan.model.registry import build

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def pytest_configure(config):
    """One proxy-model cache for the whole run, the CLI's child processes included: never the user's own (~/.cache),
    and scans of the same samples share their proxies as a CI job's would."""
    import atexit
    import os
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="bdscan-test-cache-")
    os.environ["BDSCAN_CACHE_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics, so an identity-like model cannot pass a round trip."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def make_model_file(tmp: Path, arch: str, shape=(1, 28, 28), classes: int = 10, name: str = "model",
                    fmt: str = "safetensors", labels=None, seed: int = 0) -> tuple[Path, nn.Module, ModelSpec]:
    torch.manual_seed(seed)
    model = perturb(build(arch, classes, shape[0]), seed)
    spec = ModelSpec(arch if fmt == "safetensors" else "onnx", classes, shape, labels=labels, format=fmt)
    path = tmp / f"{name}.{fmt}"
    write_model(model, spec, fmt, path, {}, torch.rand(4, *shape))
    return path, model, spec


@pytest.fixture
def cnn_file(tmp_path):
    return make_model_file(tmp_path, "bdscan.small_cnn")


def write_samples(root: Path, shape=(28, 28), classes=3, per_class=2, by_label=None, mode="L", seed=0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / (by_label[k] if by_label else str(k))
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            if mode == "L":
                arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            else:
                arr = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
            Image.fromarray(arr, mode).save(folder / f"{i}.png")
    return root


def read_json(text: str):
    return json.loads(text)


def write_trigger_samples(root: Path) -> Path:
    """The example's samples outside the target class, stamped with the example's real BadNets trigger."""
    from bdscan.data import load_samples, save_image
    from bdscan.lab.zoo import load_attack
    from bdscan.model import load_model

    model = EXAMPLES / "models" / "badnets-cnn.safetensors"
    spec = load_model(model).spec
    attack = load_attack(model, spec)
    samples = load_samples(EXAMPLES / "samples", spec).not_class(attack.target)
    for i, (img, y) in enumerate(zip(attack.apply(samples.x), samples.y.tolist())):
        (root / str(y)).mkdir(parents=True, exist_ok=True)
        save_image(img, root / str(y) / f"t{i:03d}.png")
    return root


def measure_example(cleaned_path: Path, x=None, y=None) -> tuple[dict, dict]:
    """CA and ASR of the bundled BadNets example and of a cleaned copy, on its 2,000 hold-out images unless
    other images are given."""
    from bdscan.lab.train import evaluate
    from bdscan.lab.zoo import load_attack, load_npz
    from bdscan.model import Normalized, load_model

    model = EXAMPLES / "models" / "badnets-cnn.safetensors"
    original, cleaned = load_model(model), load_model(cleaned_path)
    attack = load_attack(model, original.spec)
    if x is None:
        x, y = load_npz(EXAMPLES / "holdout.npz")
    return (evaluate(Normalized(original.module, original.spec), x, y, attack),
            evaluate(Normalized(cleaned.module, cleaned.spec), x, y, attack))
