"""Measure a model's clean accuracy and attack success rate on the bundled hold-out test images.

    python examples/measure.py examples/models/badnets-cnn.safetensors [cleaned.safetensors ...]

The attack comes from the lab sidecar of the first model (<name>.attack.safetensors). Hold-out images are
Fashion-MNIST test images that are not among examples/samples.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bdscan.lab.train import evaluate
from bdscan.lab.zoo import load_attack, load_npz
from bdscan.model import Normalized, load_model

HERE = Path(__file__).resolve().parent


def measure(paths: list[Path]) -> list[dict]:
    x, y = load_npz(HERE / "holdout.npz")
    first = load_model(paths[0])
    attack = load_attack(paths[0], first.spec)
    rows = []
    for p in paths:
        lm = load_model(p)
        res = evaluate(Normalized(lm.module, lm.spec), x, y, attack)
        rows.append({"model": str(p), "ca": res["ca"], "asr": res["asr"]})
    return rows


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 4
    for row in measure([Path(a) for a in argv]):
        asr = "n/a" if row["asr"] is None else f"{row['asr']:.2%}"
        print(f"{row['model']}: clean accuracy {row['ca']:.2%}, attack success rate {asr} (n=2000 hold-out)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
