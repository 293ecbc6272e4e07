"""Where `clean` loses accuracy, and one lead against it: the weight of the target class's own clean images in the
head remap's fit.

    python -m benchmarks.remap_weights [--weights 1,9,balanced,1+balanced] [MODEL_NAME ...]

`clean --target-class` (in-process, seed 0, the samples `bdscan` gets) on each lab model with a backdoor (default:
every one but the WaNet resnet18), once per weight setting (CleanSettings.remap_weights: ``balanced`` gives the
target's images as much weight as all triggered images together, 9 with ten classes; ``1+balanced`` tries both and
lets the held-out score choose). Measured on the same 2,000 test images as benchmarks/CLEAN_RESULTS.md: CA drop,
attack success, the target class's own accuracy before and after, whether bdscan's own check passed (a run it did
not pass writes no model in the CLI), the units the unit edit dampened (none on most small CNNs: there the accuracy
lost is the remap's and the repair's). Prints a line per run and a summary per setting (mean and worst drop, runs
meeting both bars: ASR at most 2% and CA within 1 point, a run that writes no model failing and counting as the
model unchanged).
"""

from __future__ import annotations

import json
import sys
import time

import torch

from benchmarks.clean_table import summary, verdict
from benchmarks.zoo import LAB_MODELS, SCAN_MODELS, WANET_RESNET18

SETTINGS = {"1": (1.0,), "9": (9.0,), "30": (30.0,), "balanced": (None,), "1+balanced": (1.0, None)}
DEFAULT = [e.name for e in SCAN_MODELS + LAB_MODELS if e.attack is not None and e != WANET_RESNET18]


def run(entry, weights) -> dict:
    from bdscan.evaluate import predict
    from bdscan.lab.train import evaluate
    from bdscan.model import Normalized, load_model
    from bdscan.pipeline import clean
    from bdscan.settings import CleanSettings

    from benchmarks.common import sample_dirs
    from benchmarks.zoo import make

    attack = make(entry).attack
    sdir, _, x, y = sample_dirs(entry, attack)
    lo = load_model(entry.cli_path)
    original = Normalized(lo.module, lo.spec).eval()
    before = evaluate(original, x, y, attack)
    t0 = time.perf_counter()
    oc = clean(entry.cli_path, sdir, CleanSettings(target_class=attack.target, remap_weights=weights))
    row = {"model": entry.name, "removed": bool(oc.removed), "wall_s": round(time.perf_counter() - t0, 1),
           "ca_before": before["ca"], "asr_before": before["asr"],
           "units": oc.edit.plan.total_units if oc.edit and oc.edit.plan else 0}
    if oc.module is not None:
        cleaned = Normalized(oc.module, lo.spec).eval()
        after = evaluate(cleaned, x, y, attack)
        own = y == attack.target
        row.update(measured_ca=after["ca"], measured_asr=after["asr"],
                   target_before=float((predict(original, x[own]) == attack.target).float().mean()),
                   target_after=float((predict(cleaned, x[own]) == attack.target).float().mean()))
        chosen = (oc.edit.remap or {}).get("chosen") or {}
        row.update(remap={k: chosen.get(k) for k in ("layer", "ridge", "target_weight")},
                   repair_epoch=oc.repair.best_epoch if oc.repair else None)
        if oc.removed:  # the CLI writes only these; clean_table counts the others as the model unchanged
            row.update(ca_after=after["ca"], asr_after=after["asr"])
    row["verdict"] = verdict(row)
    return row


def main(argv: list[str]) -> int:
    from bdscan.devices import keep_freed_memory

    from benchmarks.zoo import EVERY_MODEL

    keep_freed_memory()
    torch.set_num_threads(2)
    chosen = ["1", "balanced"]
    if "--weights" in argv:
        i = argv.index("--weights")
        chosen = argv[i + 1].split(",")
        del argv[i:i + 2]
    entries = {e.name: e for e in EVERY_MODEL}
    names = argv or DEFAULT
    for setting in chosen:
        rows = []
        for name in names:
            r = run(entries[name], SETTINGS[setting])
            rows.append(r)
            drop = r["ca_before"] - r.get("measured_ca", r["ca_before"])
            print(f"weights {setting:10s} {name:18s} removed {str(r['removed']):5s} CA drop {100 * drop:5.2f} pt, "
                  f"ASR {100 * r.get('measured_asr', r['asr_before']):6.2f}%, target "
                  f"{100 * r.get('target_before', 0):.1f}% -> {100 * r.get('target_after', 0):.1f}%, units "
                  f"{r['units']}, remap {json.dumps(r.get('remap'))}, repair epoch {r.get('repair_epoch')}, "
                  f"{r['wall_s']:.1f} s", flush=True)
        print(f"weights {setting} (a pass: both bars met):\n{summary(rows)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
