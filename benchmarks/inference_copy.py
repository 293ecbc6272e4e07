"""Why detection searches triggers against a folded, channels_last copy of the model: one forward and backward
pass of 160 images (16 per class, one inversion step) with the model as loaded and with
`bdscan.devices.inference_copy`, on each lab architecture, and the largest logit difference between them.
Then why the CLI keeps freed memory in the heap (`bdscan.devices.keep_freed_memory`): `bdscan scan` of the
bundled example as the CLI runs it, and the same command with the CLI's app started without that call; wall,
user and kernel time of each process.

    python -m benchmarks.inference_copy

Needs the lab models in benchmarks/cache (`python -m benchmarks.run --train` makes them); the small CNN is the
bundled example. Best of four rounds of eight passes each, rounds interleaved so load from other jobs hits both.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
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


# the CLI's own app, its main() (and so keep_freed_memory) left out
WITHOUT = ("import sys, typer; from bdscan.cli.app import app; "
           "sys.exit(typer.main.get_command(app).main(prog_name='bdscan'))")


def scan_times(starter: list[str]) -> tuple[float, float, float]:
    """(wall, user, kernel) seconds of one `bdscan scan` process on the bundled example."""
    example = HERE.parent / "examples"
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(starter + ["scan", str(example / "models" / "badnets-cnn.safetensors"), "--samples",
                                  str(example / "samples"), "--format", "json", "-o", str(Path(tmp) / "r.json")],
                       capture_output=True, check=False)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


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
    for label, starter in (("bdscan scan (CLI)", [sys.executable, "-m", "bdscan"]),
                           ("without keep_freed_memory", [sys.executable, "-c", WITHOUT])):
        wall, user, kernel = scan_times(starter)
        print(f"{label}: wall {wall:.1f} s, user {user:.1f} s, kernel {kernel:.1f} s")


if __name__ == "__main__":
    main()
