"""`bdscan clean` with no target given (detection chooses it) on lab backdoors, measured with the real trigger.

    python -m benchmarks.clean_detected [--seed N] MODEL_NAME ...

Per model (any in benchmarks.zoo): the real CLI, `bdscan clean MODEL --samples DIR --seed N --format json`, with
the 10 clean test images per class the scan tables use; then clean accuracy and attack success of the original and
the cleaned model on the lab test images bdscan never saw (the same split as clean_table; the digits' own for a
model of the digits). Prints the
verdict, the target detection chose, the forget set's trigger families, CA and ASR before and after, wall time.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import machine, measure, pct, run_cli, take_seed, zoo_models


def main(argv: list[str]) -> int:
    torch.set_num_threads(2)
    seed, names = take_seed(argv)
    print(f"Machine: {machine()}; seed {seed}", flush=True)
    for e, lm, sdir, x, y in zoo_models(names):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            rc, wall, stdout, stderr, _ = run_cli(["clean", str(e.cli_path), "--samples", str(sdir), "--out", str(out),
                                                   "--seed", str(seed), "--format", "json"])
            report = json.loads(stdout) if stdout.strip().startswith("{") else {}
            before = measure(e.path, lm.attack, x, y)
            cleaned = out / e.cli_path.name
            after = measure(cleaned, lm.attack, x, y) if rc == 0 and cleaned.exists() else None
        kind = (report.get("trigger") or {}).get("kind")
        line = (f"{e.name}: exit {rc}, verdict {report.get('verdict')}, target {report.get('target_class')} "
                f"(attack's {lm.attack.target if lm.attack else None}), forget set {kind}; CA {pct(before['ca'])} -> "
                f"{pct(after['ca']) if after else '—'}, ASR {pct(before['asr'])} -> "
                f"{pct(after['asr']) if after else '—'}; wall {wall:.1f} s")
        if rc not in (0, 1):
            line += f"; {(stderr.strip().splitlines() or [''])[-1]}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
