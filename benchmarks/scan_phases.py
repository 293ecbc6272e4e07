"""Where a scan's time goes: each stage of detection timed apart, and when each class's mask last shrank.

    python -m benchmarks.scan_phases [--seed N] [MODEL_NAME ...]

Per lab model (default: the BadNets CNN, VGG and resnet18), on the folded copy detection searches: seconds for the
mask inversion, the warp search, the blend search, the feature shift, MM-BD and the carry rule's proxy models
(trained only when some class passes the threshold), and per class the last step at which the mask inversion found
a smaller successful mask (of 500). Classes still improving near step 500 mean stopping classes early would not
shorten the search. (logs/scan-phases.txt was written before the blend search and the proxies.)
"""

from __future__ import annotations

import sys
import time

import torch

from benchmarks.common import sample_dirs, take_seed
from benchmarks.zoo import HELD_OUT_MODELS, LAB_MODELS, SCAN_MODELS


def main(argv: list[str]) -> int:
    import bdscan.detect as D
    from bdscan.data import load_samples
    from bdscan.devices import inference_copy
    from bdscan.model import Normalized, load_model

    torch.set_num_threads(2)
    seed, argv = take_seed(argv)
    entries = {e.name: e for e in SCAN_MODELS + LAB_MODELS + HELD_OUT_MODELS}
    last: list[int] = []
    update = D._Smallest._update

    def recording(self, step, *args):  # the mask inversion's bookkeeping, watched: which classes improved when
        better = update(self, step, *args)
        if better is not None:
            last[:] = [step if b else s for b, s in zip(better.tolist(), last or [0] * len(better))]
        return better

    D._Smallest._update = recording
    try:
        for name in argv or ["badnets-cnn", "badnets-vgg", "badnets-resnet18"]:
            e = entries[name]
            sdir = sample_dirs(e, None)[0]
            loaded = load_model(e.cli_path)
            s = load_samples(sdir, loaded.spec, min_per_class=2)
            classes = list(range(loaded.spec.num_classes))
            model = inference_copy(Normalized(loaded.module, loaded.spec).eval(), s.x[:32])
            times = {}
            last.clear()
            t0 = time.perf_counter()
            triggers = D.invert_triggers(model, s.x, s.y, classes, seed=seed)
            improved = list(last)
            times["mask inversion"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            D.invert_warps(model, s.x, s.y, classes, seed=seed)
            times["warp search"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            D.invert_blends(model, s.x, s.y, classes, seed=seed)
            times["blend search"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            D.feature_shift(model, s.x, s.y, triggers, len(classes))
            times["feature shift"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            D.max_margins(model, tuple(s.x.shape[1:]), classes, seed=seed)
            times["MM-BD"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            D.train_proxies(s.x, s.y, len(classes))
            times["proxy models"] = time.perf_counter() - t0
            print(f"{name} (seed {seed}): " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()), flush=True)
            print(f"  last step a class's mask shrank: {improved}", flush=True)
    finally:
        D._Smallest._update = update
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
