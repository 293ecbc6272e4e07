"""Cheaper proxy models for the carry rule, against the separation it was chosen for.

    python -m benchmarks.proxy_variants [SPEC ...]

Each SPEC is ``base`` (CarrySettings(): four proxies until they went to three on these figures, so the logs
written before say four) or comma-separated changes to it: ``width=N`` (the proxies' SmallCNN width, 32 by default),
``steps=N``, ``lr=X``, ``batch=N``, ``proxies=N``, ``size=N`` (images scaled to at most N pixels a side). Per
variant: the proxies' training time on the bundled samples, then, on every saved trigger search in
benchmarks/out/carry/ (``python -m benchmarks.carry``), the carry of the classes over the threshold in clean models
(the natural routes: they should carry more than the bar) and of the backdoor targets flagged (they should not), in
nats and per unit of the class's score (the bar is 1 nat per unit of score since the eighth held-out table; a fixed
2 nats before, and the logs before it print nats only).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import torch

from benchmarks.carry import OUT, carried, samples
from benchmarks.zoo import EVERY_MODEL

DEFAULT = ["base", "width=16", "steps=100,lr=0.004", "proxies=4", "size=20", "size=14"]


def main(argv: list[str]) -> int:
    import bdscan.model.builtin as builtin
    from bdscan.detect import CarrySettings, train_proxies
    from bdscan.devices import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(2)
    entries = {e.name: e for e in EVERY_MODEL}
    x, y = samples()
    docs = {p.stem: torch.load(p, weights_only=True) for p in sorted(OUT.glob("*.pt"))}
    print(f"{len(docs)} saved trigger searches; bar {CarrySettings().bar} nats per unit of score", flush=True)
    small_cnn = builtin.SmallCNN
    try:
        for spec in argv or DEFAULT:
            changes = dict(kv.split("=") for kv in spec.split(",")) if spec != "base" else {}
            width = int(changes.pop("width", 32))
            settings = replace(CarrySettings(), **{k: float(v) if k == "lr" else int(v) for k, v in changes.items()})
            # train_proxies builds bdscan.model.builtin.SmallCNN: a narrower one for this variant
            builtin.SmallCNN = lambda n, in_channels=3, _w=width: small_cnn(n, in_channels=in_channels, width=_w)
            t0 = time.perf_counter()
            proxies = train_proxies(x, y, 10, settings)
            seconds = time.perf_counter() - t0
            natural, targets, per_natural, per_target = [], [], [], []
            for stem, doc in docs.items():
                entry = entries[stem.rsplit("-s", 1)[0]]
                scores, thr, c, over = carried(proxies, x, y, doc, settings.size)
                if entry.attack is None:
                    natural += [float(c[k]) for k in over]
                    per_natural += [float(c[k]) / float(scores[k]) for k in over]
                elif float(scores[entry.target]) > thr:
                    targets.append(float(c[entry.target]))
                    per_target.append(float(c[entry.target]) / float(scores[entry.target]))
            print(f"{spec}: proxies trained in {seconds:.1f} s; clean classes over the threshold carry "
                  f"{min(natural):+.2f} to {max(natural):+.2f} ({len(natural)}); flagged backdoor targets "
                  f"{min(targets):+.2f} to {max(targets):+.2f} ({len(targets)}); per unit of score: clean "
                  f"{min(per_natural):+.2f} to {max(per_natural):+.2f}, targets {min(per_target):+.2f} to "
                  f"{max(per_target):+.2f}", flush=True)
    finally:
        builtin.SmallCNN = small_cnn
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
