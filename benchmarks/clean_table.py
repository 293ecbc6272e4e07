"""Issue 3 measure: `bdscan clean` on lab backdoors, in the target-known and the BDK (real trigger images) settings.

    python -m benchmarks.clean_table [MODEL_NAME ...]

For each model of benchmarks.zoo.CLEAN_MODELS (trained once into benchmarks/cache/) and each setting, runs the
real CLI as a subprocess with 10 clean test images per class as --samples, reads report.json's per-stage
timings, then measures clean accuracy (CA) and attack success rate (ASR) of the original and the cleaned model
on 2,000 Fashion-MNIST test images that bdscan never saw (disjoint from the samples and the trigger images).
Writes benchmarks/CLEAN_RESULTS.md (and clean_results.json with every number). Pass: ASR after <= 2% and
CA after >= CA before - 1 point.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.common import earlier_rows, machine, measure, pct, run_cli, sample_dirs, write_json
from benchmarks.zoo import CLEAN_MODELS, HERE, make

OUT = HERE / "out" / "clean"
ASR_BAR = 0.02
CA_DROP = 0.01


def run_one(entry, setting: str, sdir: Path, tdir: Path, target: int) -> dict:
    out = OUT / f"{entry.name}-{setting}"
    shutil.rmtree(out, ignore_errors=True)  # a run that writes no model must not find the last run's model there
    args = ["clean", str(entry.cli_path), "--samples", str(sdir), "--out", str(out), "--force", "--seed", "0"]
    args += ["--target-class", str(target)] if setting == "target-known" else ["--trigger-samples", str(tdir)]
    rc, wall, stdout, stderr, rss = run_cli(args)
    row = {"model": entry.name, "setting": setting, "rc": rc, "wall_s": round(wall, 1), "peak_rss_mib": round(rss),
           "args": args}
    report = out / "report.json"
    if report.exists():
        doc = json.loads(report.read_text())
        row.update(verdict_tool=doc["verdict"], timings=doc["timings"], found_target=doc["target_class"])
    else:
        row.update(verdict_tool=None, timings={}, error=(stderr.strip().splitlines() or ["no report"])[-1])
    cleaned = out / entry.cli_path.name
    row["cleaned"] = str(cleaned) if cleaned.exists() else None
    return row


def verdict(row: dict) -> str:
    if row.get("asr_after") is None:
        return "FAIL (no cleaned model written)"
    # accuracies are float32 shares of 2,000 images: a drop of exactly 20 images reads 0.00999999 or 0.01000005
    ok_asr = round(row["asr_after"], 6) <= ASR_BAR
    ok_ca = round(row["ca_before"] - row["ca_after"], 6) <= CA_DROP
    if ok_asr and ok_ca:
        return "pass"
    return "FAIL (" + ", ".join(m for m, ok in (("ASR > 2%", ok_asr), ("CA drop > 1 pt", ok_ca)) if not ok) + ")"


def table(rows: list[dict]) -> str:
    stages = []
    for r in rows:
        stages += [s for s in r["timings"] if s not in stages]
    head = ["model", "setting", "CA before", "CA after", "ASR before", "ASR after", "wall s", "stages (s)", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        st = ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()) or r.get("error", "—")
        lines.append(f"| {r['model']} | {r['setting']} | {pct(r['ca_before'])} | {pct(r.get('ca_after'))} | "
                     f"{pct(r['asr_before'])} | {pct(r.get('asr_after'))} | {r['wall_s']:.1f} | {st} | "
                     f"{r['verdict']} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    # a run that wrote no model leaves the model as it was: its ASR and CA count unchanged (as benchmarks.run)
    asr = [r["asr_before"] if r.get("asr_after") is None else r["asr_after"] for r in rows]
    drop = [0.0 if r.get("ca_after") is None else r["ca_before"] - r["ca_after"] for r in rows]
    wall = [r["wall_s"] for r in rows]
    passed = sum(r["verdict"] == "pass" for r in rows)
    kept = sum(r.get("asr_after") is None for r in rows)
    return (f"- {passed} of {len(rows)} runs pass; {kept} wrote no model (counted below as the model unchanged).\n"
            f"- ASR after: mean {statistics.mean(asr):.2%}, worst {max(asr):.2%}.\n"
            f"- CA drop (before - after): mean {statistics.mean(drop) * 100:.2f} pt, worst {max(drop) * 100:.2f} pt.\n"
            f"- `bdscan clean` wall time: mean {statistics.mean(wall):.1f} s, worst {max(wall):.1f} s.")


def missing(rows: list[dict]) -> str:
    done = {(r["model"], r["setting"]) for r in rows}
    gaps = [f"{e.name} ({s})" for e in CLEAN_MODELS for s in ("target-known", "bdk") if (e.name, s) not in done]
    return f"Not measured (no row in clean_results.json): {', '.join(gaps)}." if gaps else "Every model measured."


def main(argv: list[str]) -> int:
    torch.set_num_threads(2)
    wanted = set(argv)
    old = HERE / "clean_results.json"
    rows = earlier_rows(old, wanted)
    report_only = "--report-only" in wanted  # rebuild CLEAN_RESULTS.md from clean_results.json, run nothing
    for entry in CLEAN_MODELS:
        if report_only or (wanted and entry.name not in wanted):
            continue
        lm = make(entry)
        attack = lm.attack
        sdir, tdir, x, y = sample_dirs(entry, attack)
        before = measure(entry.cli_path, attack, x, y)
        print(f"{entry.name}: CA {before['ca']:.2%} ASR {before['asr']:.2%} before (n={len(y)})", flush=True)
        for setting in ("target-known", "bdk"):
            row = run_one(entry, setting, sdir, tdir, attack.target)
            row.update(ca_before=before["ca"], asr_before=before["asr"])
            if row["cleaned"]:
                after = measure(Path(row["cleaned"]), attack, x, y)
                row.update(ca_after=after["ca"], asr_after=after["asr"])
            row["verdict"] = verdict(row)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "args"}), flush=True)
            write_json(HERE / "clean_results.json", rows)
    md = "\n".join([
        "# `bdscan clean` on lab backdoors (issue 3)", "",
        f"Machine: {machine()}.", "",
        "Samples: 10 clean Fashion-MNIST test images per class. BDK: 30 test images carrying the real trigger "
        "(`--trigger-samples`). Measure: 2,000 other test images (disjoint from both), resized to the model's "
        "input. Pass: ASR after <= 2% and CA within 1 point of the original. Times are `report.json` timings "
        "per stage and the CLI's whole wall time (process start and model loading included).", "",
        table(rows), "", summary(rows), "", missing(rows), "",
        "Produced by `python -m benchmarks.clean_table`; every number comes from that run "
        "(raw values: benchmarks/clean_results.json).", ""])
    (HERE / "CLEAN_RESULTS.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
