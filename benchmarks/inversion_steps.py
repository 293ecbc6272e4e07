"""Why trigger inversion runs 500 steps: mask size and real-trigger match of the synthesised trigger toward the
known target, with the old (200 steps, patience 40) and the current (500, patience 150) settings.

    python -m benchmarks.inversion_steps [MODEL_NAME ...]

Prints, per lab model and setting: the mask's share of the image, and the share of 1,000 held-out test images
of other classes that the synthesised trigger sends to the target. A 3x3 BadNets patch covers 1.1% of 28x28.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import torch

from benchmarks.common import sample_dirs
from benchmarks.zoo import CLEAN_MODELS, LAB_MODELS, SCAN_MODELS, make

SETTINGS = {"200 steps, patience 40": dict(steps=200, patience=40), "500 steps, patience 150": {}}


def main(argv: list[str]) -> int:
    from bdscan.data import load_samples
    from bdscan.detect import InversionSettings, invert_triggers
    from bdscan.model import Normalized, load_model

    torch.set_num_threads(2)
    entries = {e.name: e for e in CLEAN_MODELS + SCAN_MODELS + LAB_MODELS}
    for name in argv or ["badnets-cnn", "trojan-cnn", "badnets-vgg"]:
        e = entries[name]
        lm = make(e, progress=None)
        sdir, _, x, y = sample_dirs(e, lm.attack)
        loaded = load_model(e.path)
        model = Normalized(loaded.module, loaded.spec).eval()
        s = load_samples(sdir, loaded.spec, min_per_class=2)
        t = lm.attack.target
        for label, kw in SETTINGS.items():
            t0 = time.perf_counter()
            trig = invert_triggers(model, s.x, s.y, [t], settings=replace(InversionSettings(), **kw))[t]
            keep = y != t
            with torch.no_grad():
                hit = (model(trig.apply(x[keep][:1000])).argmax(1) == t).float().mean().item()
            print(f"{name} [{label}]: mask {trig.mask_l1:.2%} of the image, sends {hit:.1%} of held-out images "
                  f"to {t}, {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
