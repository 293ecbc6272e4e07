"""The carry rule on lab models: each class's raw score, and whether its trigger carries to proxy models.

    python -m benchmarks.carry [--seeds 0,1,2] [--report-only] MODEL_NAME ...

Per lab model (any in benchmarks.zoo, 28 pixels) and seed: `detect` as `bdscan scan` runs it (the bundled samples),
its trigger per class (the family that scored) saved to benchmarks/out/carry/NAME-sSEED.pt. Then, from the saved
triggers: proxy models trained on the samples (bdscan.detect.train_proxies, CarrySettings()), each class's carry
(bdscan.detect.carry), and per run the verdict without the rule (the highest raw score over the threshold) and with
it (classes over the threshold whose carry passes the bar left out), the classes over the threshold with their
score and carry, and the target's carry. ``--report-only`` reads saved triggers only. (logs/carry.txt was written
when the rule had four proxies and a fixed 2-nat bar.) Prints a line per run and a
summary: backdoored runs with the target found and clean runs flagged, both ways, and the carries of the classes
over the threshold (natural and not) at their extremes.
"""

from __future__ import annotations

import sys
import time

import torch

from benchmarks.common import take_seeds
from benchmarks.zoo import EVERY_MODEL, HERE

OUT = HERE / "out" / "carry"


def samples():
    from bdscan.data import load_samples
    from bdscan.model import load_model
    from benchmarks.zoo import ROOT

    spec = load_model(ROOT / "examples" / "models" / "clean-cnn.safetensors").spec
    s = load_samples(ROOT / "examples" / "samples", spec, min_per_class=2)
    return s.x, s.y


def search(entry, seed: int, x, y) -> None:
    """One detect() run; its shown trigger per class and raw class scores saved."""
    from bdscan.detect import detect
    from bdscan.model import Normalized, load_model

    loaded = load_model(entry.path)
    d = detect(Normalized(loaded.module.eval(), loaded.spec), x, y, loaded.spec.num_classes, seed=seed,
               carry_settings=None)
    shown = [d.shown_trigger(k) for k in range(loaded.spec.num_classes)]
    h, w = x.shape[-2:]
    doc = {"mask": torch.stack([t.mask for t in shown]), "pattern": torch.stack([t.pattern for t in shown]),
           "flow": torch.stack([t.flow if t.flow is not None else torch.zeros(2, h, w) for t in shown]),
           "is_warp": torch.tensor([t.flow is not None for t in shown]),
           "scores": torch.tensor([d.class_scores()[k] for k in range(loaded.spec.num_classes)]),
           "threshold": torch.tensor(d.threshold)}
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(doc, OUT / f"{entry.name}-s{seed}.pt")
    print(f"  searched {entry.name} seed {seed}: {d.seconds:.0f} s", flush=True)


def triggers_of(doc: dict) -> dict:
    from bdscan.detect import Trigger

    warp = doc.get("is_warp", torch.zeros(len(doc["mask"]), dtype=torch.bool))
    return {k: Trigger(k, doc["mask"][k], doc["pattern"][k], 0.0, 1.0,
                       flow=doc["flow"][k] if bool(warp[k]) else None) for k in range(len(doc["mask"]))}


def carried(proxies, x, y, doc: dict, size: int | None = None):
    """A saved search under these proxies: (raw scores, threshold, carry per class, the classes over the threshold)."""
    from bdscan.detect import CarrySettings, carry

    scores, thr = doc["scores"], float(doc.get("threshold", torch.tensor(2.0)))
    c = carry(proxies, x, y, triggers_of(doc), CarrySettings.size if size is None else size)
    return scores, thr, c, [k for k in range(len(scores)) if float(scores[k]) > thr]


def main(argv: list[str]) -> int:
    from bdscan.detect import CarrySettings, train_proxies

    torch.set_num_threads(2)
    seeds, argv = take_seeds(argv, [0])
    report_only = "--report-only" in argv
    names = [a for a in argv if a != "--report-only"]
    entries = {e.name: e for e in EVERY_MODEL}
    x, y = samples()
    for name in names:
        for seed in seeds:
            if not report_only and not (OUT / f"{name}-s{seed}.pt").exists():
                search(entries[name], seed, x, y)
    settings = CarrySettings()
    t0 = time.perf_counter()
    proxies = train_proxies(x, y, 10, settings)
    print(f"{settings.proxies} proxy models trained on the samples in {time.perf_counter() - t0:.1f} s; natural: "
          f"carry over {settings.bar} nats per unit of the class's score")
    tally = {"bd": 0, "bd_raw": 0, "bd_rule": 0, "clean": 0, "clean_raw": 0, "clean_rule": 0}
    natural_carry, kept_carry = [], []
    for name in names:
        entry = entries[name]
        target = entry.target if entry.attack else None
        for seed in seeds:
            path = OUT / f"{name}-s{seed}.pt"
            if not path.exists():
                print(f"{name} seed {seed}: no saved search")
                continue
            scores, thr, c, over = carried(proxies, x, y, torch.load(path, weights_only=True))
            natural = [k for k in over if settings.natural(float(scores[k]), float(c[k]))]
            natural_carry += [float(c[k]) for k in natural]
            kept_carry += [float(c[k]) for k in over if k not in natural]
            raw = int(scores.argmax()) if over else None
            left = scores.clone()
            left[natural] = -float("inf")
            rule = int(left.argmax()) if float(left.max()) > thr else None
            kind = "bd" if target is not None else "clean"
            tally[kind] += 1
            tally[kind + "_raw"] += (raw == target) if target is not None else (raw is not None)
            tally[kind + "_rule"] += (rule == target) if target is not None else (rule is not None)
            listed = ", ".join(f"{k} ({float(scores[k]):.2f}, carry {float(c[k]):+.2f})" for k in over) or "none"
            print(f"{name:16s} seed {seed} target {'—' if target is None else target}: flagged without the rule "
                  f"{'—' if raw is None else raw}, with it {'—' if rule is None else rule}; over the threshold: {listed}"
                  + ("" if target is None else f"; target's carry {float(c[target]):+.2f}"))
    print(f"backdoored runs with the target found: {tally['bd_raw']} of {tally['bd']} without the rule, "
          f"{tally['bd_rule']} with it; clean runs flagged: {tally['clean_raw']} of {tally['clean']} without, "
          f"{tally['clean_rule']} with it")
    if natural_carry or kept_carry:
        span = (lambda v: f"{min(v):+.2f} to {max(v):+.2f}" if v else "none")
        print(f"carry of the classes over the threshold: left out as natural {span(natural_carry)}; kept "
              f"{span(kept_carry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
