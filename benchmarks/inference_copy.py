"""Why detection searches triggers against a folded, channels_last copy of the model: one forward and backward
pass of 160 images (16 per class, one inversion step) with the model as loaded and with
`bdscan.devices.inference_copy`, on each lab architecture, and the largest logit difference between them.

    python -m benchmarks.inference_copy

Needs the lab models in benchmarks/cache (`python -m benchmarks.run --train` makes them); the small CNN is the
bundled example. Best of four rounds of eight passes each, rounds interleaved so load from other jobs hits both.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bdscan.devices import inference_copy
from bdscan.model import Normalized, load_model

HERE = Path(__file__).resolve().parent
MODELS = [HERE.parent / "examples" / "models" / "badnets-cnn.safetensors", HERE / "cache" / "badnets-vgg.safetensors",
          HERE / "cache" / "badnets-resnet18.safetensors"]
SIZES = {"badnets-resnet18": 32}


def per_pass_ms(model: torch.nn.Module, x: torch.Tensor) -> float:
    t = time.perf_counter()
    for _ in range(8):
        model(x.clone().requires_grad_(True)).sum().backward()
    return (time.perf_counter() - t) / 8 * 1000


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for path in MODELS:
        if not path.exists():
            print(f"{path.stem}: not in the cache, skipped")
            continue
        loaded = load_model(path)
        size = SIZES.get(path.stem, 28)
        x = torch.rand(160, loaded.spec.channels, size, size, generator=torch.Generator().manual_seed(0))
        plain = Normalized(loaded.module, loaded.spec).eval()
        for p in plain.parameters():
            p.requires_grad_(False)
        fast = inference_copy(plain, x[:32])
        with torch.no_grad():
            diff = float((fast(x) - plain(x)).abs().max())
        times = {"as loaded": [], "inference copy": []}
        for _ in range(4):
            times["as loaded"].append(per_pass_ms(plain, x))
            times["inference copy"].append(per_pass_ms(fast, x))
        a, b = min(times["as loaded"]), min(times["inference copy"])
        print(f"{path.stem}: as loaded {a:.0f} ms, inference copy {b:.0f} ms ({a / b:.2f}x); "
              f"largest logit difference {diff:.1e}")


if __name__ == "__main__":
    main()
