"""Several models in one `bdscan scan` call (as pre-commit passes them) against one call per model.

    python -m benchmarks.multi_scan [--seed N] [MODEL_NAME ...]

The carry rule's proxy models depend on the samples alone, so one call trains them once, for the first model that
needs them. Default models: four held-out clean CNNs whose Bag passes the threshold (so every scan of them needs the
proxies). Prints each model's scan time (the report's) both ways, and the wall time of the one call against the sum
of the separate calls' wall times (process start and model loading included).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import machine, run_cli, sample_dirs, take_seed
from benchmarks.zoo import EVERY_MODEL, make

DEFAULT = ["clean-cnn-s15", "clean-cnn-s18", "clean-cnn-s19", "clean-cnn-s20"]


def _scan(paths: list[Path], samples: Path, seed: int, out: Path) -> tuple[float, list[dict]]:
    rc, wall, _, stderr, _ = run_cli(["scan", *map(str, paths), "--samples", str(samples), "--format", "json",
                                      "-o", str(out), "--seed", str(seed)])
    if rc not in (0, 1):
        raise SystemExit(f"bdscan scan exited {rc}: {stderr.strip().splitlines()[-1:]}")
    return wall, json.loads(out.read_text())["models"]


def _verdict(m: dict) -> str:
    return f"class {m['target_class']}" if m["suspected"] else "clean"


def main(argv: list[str]) -> int:
    seed, argv = take_seed(argv)
    entries = {e.name: e for e in EVERY_MODEL}
    chosen = [entries[n] for n in (argv or DEFAULT)]
    for e in chosen:
        make(e)
    samples = {sample_dirs(e, None)[0] for e in chosen}
    if len(samples) != 1:
        raise SystemExit("the models must share one input size (one samples folder)")
    sdir = samples.pop()
    paths = [e.cli_path for e in chosen]
    print(f"Machine: {machine()}.\n{len(paths)} models, seed {seed}, samples {sdir.name}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        alone, alone_wall = [], 0.0
        for p in paths:
            wall, models = _scan([p], sdir, seed, Path(tmp) / "one.json")
            alone.append(models[0])
            alone_wall += wall
        together_wall, together = _scan(paths, sdir, seed, Path(tmp) / "all.json")
    print(f"{'model':<22} {'alone s':>8} {'in one call s':>14}  verdict alone / in one call")
    for e, a, t in zip(chosen, alone, together):
        print(f"{e.name:<22} {a['seconds']:>8.1f} {t['seconds']:>14.1f}  {_verdict(a)} / {_verdict(t)}")
    same = all(a["evidence"].get("carry") == t["evidence"].get("carry") for a, t in zip(alone, together))
    print(f"one call per model: {alone_wall:.1f} s wall in all; one call for all: {together_wall:.1f} s wall "
          f"(every model's carry the same both ways: {'yes' if same else 'NO'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
