"""Make the bundled example: a small CNN on Fashion-MNIST with a BadNets backdoor (target 0), a clean twin,
10 clean test images per class as samples, and a held-out test set for measuring.

Needs the Debian package dataset-fashion-mnist. Run from the repository root:
    python examples/make_example.py
Outputs (committed, so the README's first command needs no download):
    examples/models/badnets-cnn.safetensors (+ .onnx, + .attack.safetensors)
    examples/models/clean-cnn.safetensors
    examples/samples/<class>/*.png
    examples/holdout.npz   (2,000 test images the tool never sees, for CA and ASR)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from bdscan.data import save_image
from bdscan.lab.zoo import fmnist, make_lab_model, save_npz

HERE = Path(__file__).resolve().parent
PER_CLASS = 10
HOLDOUT = 2000


def main() -> None:
    torch.set_num_threads(2)
    models = HERE / "models"
    bad = make_lab_model(models / "badnets-cnn.safetensors", attack="badnets", epochs=3, onnx=True, progress=print)
    clean = make_lab_model(models / "clean-cnn.safetensors", attack=None, epochs=3, progress=print)
    x, y = fmnist("test")
    # samples: the first 10 test images of each class; the hold-out set comes from the rest
    chosen = torch.cat([torch.nonzero(y == k).flatten()[:PER_CLASS] for k in range(10)])
    samples = HERE / "samples"
    shutil.rmtree(samples, ignore_errors=True)
    for i in chosen.tolist():
        folder = samples / str(int(y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        save_image(x[i], folder / f"test{i:05d}.png")
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[chosen] = False
    keep = torch.nonzero(rest).flatten()[:HOLDOUT]
    save_npz(HERE / "holdout.npz", x[keep], y[keep])
    for lm in (bad, clean):
        print(f"{lm.name}: CA {lm.ca:.2%} ASR {lm.asr if lm.asr is None else f'{lm.asr:.2%}'} "
              f"(full Fashion-MNIST test set)")


if __name__ == "__main__":
    sys.exit(main())
