"""`clean --target-class` with and without the blend search toward the given target, measured with the real trigger.

    python -m benchmarks.clean_blend_target [--seed N] MODEL_NAME ...

Per lab model (any in benchmarks.zoo), in process: bdscan's `clean` with the attack's target given, as it ships (the
blend family searched over every class; the blend toward the target joins the forget set where its anomaly passes
the detection threshold) and with that search turned off (what `clean --target-class` did before). The samples are
the 10 clean test images per class the scan tables use; CA and ASR of the original and of each cleaned model are
measured on the Fashion-MNIST test images bdscan never saw. Prints per model and run: bdscan's verdict, the forget
set's trigger families, the blend's ratio and anomaly, CA and ASR before and after, and wall time; then the mean and
worst ASR after and CA drop of each run over the models.
"""

from __future__ import annotations

import statistics
import sys
import time
from unittest import mock

import torch

from benchmarks.clean_table import ASR_BAR, CA_DROP
from benchmarks.common import machine, pct, take_seed, zoo_models


def main(argv: list[str]) -> int:
    from bdscan import pipeline
    from bdscan.devices import keep_freed_memory
    from bdscan.lab.train import evaluate
    from bdscan.model import Normalized, load_model
    from bdscan.settings import CleanSettings

    keep_freed_memory()
    torch.set_num_threads(2)
    seed, names = take_seed(argv)
    print(f"Machine: {machine()}; seed {seed}", flush=True)
    found = {}
    real = pipeline._blend_toward

    def spy(*args, **kwargs):
        found["blend"] = real(*args, **kwargs)
        return found["blend"]

    results = {"as shipped": [], "no blend search": []}
    for e, lm, sdir, x, y in zoo_models(names):
        original = load_model(e.cli_path)
        base = evaluate(Normalized(original.module, original.spec).eval(), x, y, lm.attack)
        print(f"{e.name} (target {lm.attack.target}): CA {pct(base['ca'])}, ASR {pct(base['asr'])}", flush=True)
        for run, blend_search in (("as shipped", spy), ("no blend search", lambda *a, **k: (None, 0.0))):
            found.clear()
            settings = CleanSettings(target_class=lm.attack.target, seed=seed, device="cpu")
            t0 = time.perf_counter()
            with mock.patch.object(pipeline, "_blend_toward", blend_search):
                o = pipeline.clean(e.cli_path, sdir, settings)
            wall = time.perf_counter() - t0
            after = evaluate(Normalized(o.module, o.loaded.spec).eval(), x, y, lm.attack)
            blend = found.get("blend")
            seen = f"blend ratio {blend[0].blend:.3f}, anomaly {blend[1]:.2f}; " if blend else ""
            ok = after["asr"] <= ASR_BAR and base["ca"] - after["ca"] <= CA_DROP
            results[run].append((after["asr"], base["ca"] - after["ca"], ok))
            print(f"  {run}: verdict {'removed' if o.removed else 'not removed (no model written)'}, forget set "
                  f"{o.trigger.kind}; {seen}CA {pct(after['ca'])} ({(after['ca'] - base['ca']) * 100:+.2f}), "
                  f"ASR {pct(after['asr'])}; both bars {'met' if ok else 'missed'}; {wall:.1f} s", flush=True)
    for run, rows in results.items():
        if rows:
            asr, drop = [r[0] for r in rows], [r[1] for r in rows]
            print(f"{run}: {sum(r[2] for r in rows)} of {len(rows)} meet both bars (ASR <= {ASR_BAR:.0%}, CA drop <= "
                  f"{CA_DROP * 100:.0f} pt); ASR after mean {pct(statistics.mean(asr))}, worst {pct(max(asr))}; CA "
                  f"drop mean {statistics.mean(drop) * 100:.2f} pt, worst {max(drop) * 100:.2f} pt", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
