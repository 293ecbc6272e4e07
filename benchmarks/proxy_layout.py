"""The carry rule's proxy models trained in either memory layout: time, and how far the carries move.

    python -m benchmarks.proxy_layout [MODEL_NAME ...]

Per model (default: the bundled BadNets and clean CNNs; any 28-pixel model in benchmarks.zoo by name), on the bundled
samples: `detect` as `bdscan scan` runs it (seed 0) without the carry rule, then three proxies trained as
CarrySettings() says (channels_last) and as before (contiguous), each timed, and each class's carry (the trigger
that scored, bdscan.detect.carry) under both. Prints both carries per class, the largest difference, and the
verdict the carry rule gives with each. The two layouts run the same arithmetic in another order, so the gap
between them is what float order alone does to the carries (another CPU's kernels do the same).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import torch

from benchmarks.carry import samples
from benchmarks.zoo import EVERY_MODEL


def verdict(scores: dict[int, float], carried: torch.Tensor, threshold: float, settings) -> str:
    over = {k: s for k, s in scores.items() if s > threshold and not settings.natural(s, float(carried[k]))}
    return f"flags {max(over, key=over.get)}" if over else "flags nothing"


def main(argv: list[str]) -> int:
    from bdscan.detect import CarrySettings, carry, detect, train_proxies
    from bdscan.devices import keep_freed_memory
    from bdscan.model import Normalized, load_model

    keep_freed_memory()
    torch.set_num_threads(2)
    entries = {e.name: e for e in EVERY_MODEL}
    x, y = samples()
    layouts = {"channels_last": CarrySettings(), "contiguous": replace(CarrySettings(), channels_last=False)}
    for name in argv or ["badnets-cnn", "clean-cnn"]:
        loaded = load_model(entries[name].path)
        n = loaded.spec.num_classes
        d = detect(Normalized(loaded.module.eval(), loaded.spec), x, y, n, seed=0, carry_settings=None)
        shown = {k: d.shown_trigger(k) for k in range(n)}
        scores = d.class_scores()
        carries = {}
        for label, settings in layouts.items():
            t0 = time.perf_counter()
            proxies = train_proxies(x, y, n, settings)
            seconds = time.perf_counter() - t0
            c = carries[label] = carry(proxies, x, y, shown, settings.size)
            print(f"{name} {label:13s} proxies {seconds:5.1f} s; carry per class "
                  f"{' '.join(f'{float(v):+.2f}' for v in c)}; {verdict(scores, c, d.threshold, settings)}", flush=True)
        gap = (carries["channels_last"] - carries["contiguous"]).abs()
        over = ', '.join(f'{k}: {s:.2f}' for k, s in scores.items() if s > d.threshold) or 'none'
        print(f"{name}: largest carry difference {float(gap.max()):.2f} nats (class {int(gap.argmax())}); "
              f"scores over the threshold: {over}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
