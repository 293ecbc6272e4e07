"""The activation excess (evidence in scan reports, not scored) on the classes that matter, per run.

    python -m benchmarks.activation_excess [--seeds 0,1,2] [MODEL_NAME ...]

Per lab model and seed of the trigger search: detection as `bdscan scan` runs it (same samples, same settings),
then the activation excess of the class it flagged (if any), of the attack's target, and the largest over the
other classes. The activation excess is the share of the last linear layer's input, for other classes' images
carrying a class's synthesised trigger, outside the range the clean samples reach. Default models: the CNNs
`benchmarks.scan_table`'s EXCESS_BAR was chosen on. Prints one line per run.
"""

from __future__ import annotations

import sys

import torch

from benchmarks.common import sample_dirs, take_seeds
from benchmarks.zoo import HELD_OUT_2_MODELS, HELD_OUT_3_MODELS, HELD_OUT_MODELS, LAB_MODELS, SCAN_MODELS

DESIGN = ["badnets-cnn", "clean-cnn", "clean-cnn-s1", "clean-cnn-s2", "clean-cnn-s3", "blended-cnn-t3",
          "inputaware-cnn"]


def main(argv: list[str]) -> int:
    from bdscan.data import load_samples
    from bdscan.detect import detect
    from bdscan.lab.zoo import load_attack
    from bdscan.model import Normalized, load_model

    torch.set_num_threads(2)
    seeds, argv = take_seeds(argv)
    entries = {e.name: e for e in SCAN_MODELS + LAB_MODELS + HELD_OUT_MODELS + HELD_OUT_2_MODELS + HELD_OUT_3_MODELS}
    unknown = [n for n in argv if n not in entries]
    if unknown:
        print(f"unknown model(s): {', '.join(unknown)}", file=sys.stderr)
        return 4
    for name in argv or DESIGN:
        e = entries[name]
        if not e.path.exists():
            print(f"{name}: not trained (python -m benchmarks.zoo {name})", flush=True)
            continue
        loaded = load_model(e.path)
        target = load_attack(e.path, loaded.spec).target if e.attack else None
        s = load_samples(sample_dirs(e, None)[0], loaded.spec, min_per_class=2)
        model = Normalized(loaded.module, loaded.spec).eval()
        for seed in seeds:
            d = detect(model, s.x, s.y, loaded.spec.num_classes, seed=seed)
            ex = d.activation_excess
            flagged = f"flagged {d.target} ({d.score:.2f}) excess {ex[d.target]:.4f}" if d.suspected else \
                f"not flagged ({d.score:.2f})"
            tgt = f"target {target} excess {ex[target]:.4f}" if target is not None else "clean"
            rest = max(v for k, v in ex.items() if k not in (target, d.target))
            print(f"{name} [{e.arch}] seed {seed}: {flagged}; {tgt}; largest other {rest:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
