"""Where bdscan's clean-accuracy cost goes: per-class accuracy before and after cleaning.

    python -m benchmarks.per_class [NAME ...]

For each lab model that `python -m benchmarks.run` (or benchmarks.clean_table) cleaned with the target known, compares
the original and the cleaned model (benchmarks/out/clean/NAME-target-known/) on the same 2,000 measure images as
RESULTS.md: accuracy per class and how often each class is predicted. Prints; runs nothing but inference.
"""

from __future__ import annotations

import sys

import torch

from benchmarks.clean_table import OUT
from benchmarks.common import sample_dirs
from benchmarks.run import entries


def main(argv: list[str]) -> int:
    from bdscan.evaluate import predict
    from bdscan.lab.zoo import load_attack
    from bdscan.model import Normalized, load_model

    torch.set_num_threads(2)
    wanted = set(argv)
    for entry in entries():
        cleaned = OUT / f"{entry.name}-target-known" / entry.cli_path.name
        if (wanted and entry.name not in wanted) or not cleaned.exists():
            continue
        original = load_model(entry.path)
        attack = load_attack(entry.path, original.spec)  # the sidecar: no re-evaluation of the model
        target = attack.target
        _, _, x, y = sample_dirs(entry, attack)  # the measure set leaves out the target's trigger images
        before, after = (predict(Normalized(m.module, m.spec), x) for m in (original, load_model(cleaned)))
        drop = float((before == y).float().mean() - (after == y).float().mean()) * 100
        print(f"{entry.name} (target {target}): CA drop {drop:.2f} points on {len(y)} images")
        for k in range(int(y.max()) + 1):
            own = y == k
            a0, a1 = (float((p[own] == k).float().mean()) * 100 for p in (before, after))
            mark = "  <- target" if k == target else ""
            print(f"  class {k}: accuracy {a0:5.1f}% -> {a1:5.1f}% ({a0 - a1:+5.1f}), "
                  f"predicted {int((before == k).sum())} -> {int((after == k).sum())} times{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
