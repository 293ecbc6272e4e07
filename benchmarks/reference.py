"""`bdscan scan --reference`: the lab's small CNNs scored against a trusted clean CNN, through the CLI.

    python -m benchmarks.reference [--seeds 0] [--reference NAME] [--held-out-4] [--label L] [--without]
                                   [--report-only] [MODEL_NAME ...]

(a reference of the MNIST digits, say digits-clean-cnn-s48, with the thirteenth held-out set's other models)

One `bdscan scan` call per seed over every trained small-CNN lab model, or the 28-pixel lab models named (the VGGs
too), so the reference's searches run once per call; the bundled clean CNN as the reference unless ``--reference``
names another lab model of the task (a VGG: a reference of another architecture than the suspects'; a backdoored
one). ``--held-out-4``: the fourth held-out set only (trained after the reference rule was fixed). Per model: the
verdict with the reference, and the same seed's verdict without one: from the scan tables
(benchmarks/scan_results*.json), where they have that model, or with ``--without`` from the same call made again
without ``--reference`` (for models retrained since the tables). Prints one line per model and a summary:
backdoored models with the target found, clean models flagged, the worst case of each. Reports land in
benchmarks/out/reference/ (seed-S[-held-out-4][-L].json; the calls without the reference in without/);
``--report-only`` prints from them without scanning (only models scanned against this reference).
"""

from __future__ import annotations

import json
import sys

from benchmarks.common import run_cli, sample_dirs, take_seeds
from benchmarks.zoo import (HELD_OUT_2_MODELS, HELD_OUT_3_MODELS, HELD_OUT_4_MODELS, HELD_OUT_13_MODELS,
                            HELD_OUT_MODELS, HERE, LAB_MODELS, SCAN_MODELS)

TABLES = ["scan_results.json", "scan_results_held_out_2.json", "scan_results_held_out_3.json",
          "scan_results_held_out_4.json", "scan_results_held_out_13.json"]


def table_runs() -> dict[tuple[str, int], dict]:
    """(model, seed) -> that run of the scan tables (detection without a reference)."""
    out = {}
    for name in TABLES:
        path = HERE / name
        if path.exists():
            for r in json.loads(path.read_text()):
                out[(r["model"], r.get("seed", 0))] = r
    return out


def main(argv: list[str]) -> int:
    from bdscan.lab.zoo import load_attack
    from bdscan.model import load_model
    from bdscan.report.plots import scored_by_class

    seeds, argv = take_seeds(argv, [0])
    ref_name = "clean-cnn"
    if "--reference" in argv:
        i = argv.index("--reference")
        ref_name, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    label = ""
    if "--label" in argv:
        i = argv.index("--label")
        label, argv = "-" + argv[i + 1], argv[:i] + argv[i + 2:]
    held_out_4 = "--held-out-4" in argv
    report_only = "--report-only" in argv
    without = "--without" in argv
    argv = [a for a in argv if a not in ("--held-out-4", "--report-only", "--without")]
    every = (SCAN_MODELS + LAB_MODELS + HELD_OUT_MODELS + HELD_OUT_2_MODELS + HELD_OUT_3_MODELS + HELD_OUT_4_MODELS
             + HELD_OUT_13_MODELS)
    entries = {e.name: e for e in every if e.size == 28}  # 28-pixel tasks: Fashion-MNIST, or the digits
    unknown = [n for n in argv + [ref_name] if n not in entries]
    if unknown:
        print(f"unknown 28-pixel lab model(s): {', '.join(unknown)}", file=sys.stderr)
        return 4
    ref = entries[ref_name]
    other = [n for n in argv if entries[n].dataset != ref.dataset]
    if other:  # the reference's samples are every suspect's: one task per call
        print(f"not of the reference's data set ({ref.dataset}): {', '.join(other)}", file=sys.stderr)
        return 4
    entries = {n: e for n, e in entries.items() if e.dataset == ref.dataset}
    held = {e.name for e in HELD_OUT_4_MODELS}
    wanted = argv or [n for n, e in entries.items() if e.arch == "bdscan.small_cnn" and (n in held) == held_out_4]
    models = []
    for name in wanted:
        e = entries[name]
        if name == ref_name:
            continue
        if not e.cli_path.exists():
            print(f"{name}: not trained (python -m benchmarks.zoo {name})", flush=True)
            continue
        models.append(e)
    samples = sample_dirs(ref, None)[0]
    targets = {e.name: load_attack(e.path, load_model(e.path).spec).target if e.attack else None for e in models}
    by_path = {str(e.cli_path): e for e in models}
    tables = {} if without else table_runs()
    src = "same call" if without else "table"
    out_dir = HERE / "out" / "reference"
    (out_dir / "without").mkdir(parents=True, exist_ok=True)
    scan_args = [*by_path, "--samples", str(samples), "--format", "json", "--quiet", "--no-fail-on-detection"]
    found, missed, clean_ok, clean_flagged = [], [], [], []
    table = []  # the same runs without a reference, where a scan table holds them (scores where with evidence)
    per_seed: dict[str, dict[int, dict]] = {}  # model -> seed -> run, for what --searches would decide
    table_seed: dict[str, dict[int, dict]] = {}  # the same from the scan tables
    for seed in seeds:
        name = f"seed-{seed}{'-held-out-4' if held_out_4 else ''}{label}.json"
        report = out_dir / name
        if not report_only:
            rc, wall, _, err, _ = run_cli(["scan", *scan_args, "--reference", str(ref.cli_path), "--seed", str(seed),
                                           "-o", str(report)])
            if rc == 0 and without:  # the same call without the reference, for the comparison column
                rc, wall, _, err, _ = run_cli(["scan", *scan_args, "--seed", str(seed), "-o",
                                               str(out_dir / "without" / name)])
            if rc != 0:
                print(f"seed {seed}: bdscan scan exit {rc}: {err.strip()[-500:]}", flush=True)
                return 2
            doc = json.loads(report.read_text())
        else:  # every report of this seed (and set) against this reference: a run with --label adds models to it
            doc = {"models": []}
            for path in sorted(out_dir.glob(f"seed-{seed}{'-held-out-4' if held_out_4 else ''}*.json")):
                if held_out_4 or "held-out-4" not in path.name:
                    doc["models"] += [m for m in json.loads(path.read_text())["models"]
                                      if m["evidence"]["reference"]["path"] == str(ref.cli_path)]
        if without:
            tables.update({(by_path[m["path"]].name, seed): _run(m)
                           for m in json.loads((out_dir / "without" / name).read_text())["models"]
                           if m["path"] in by_path})
        doc["models"] = [m for m in doc["models"] if m["path"] in by_path]
        print(f"seed {seed}: {len(doc['models'])} models against {ref_name}, "
              f"{sum(m['seconds'] for m in doc['models']):.0f} s of scanning (the first model of each call includes "
              f"the reference's search)", flush=True)
        for m in doc["models"]:
            e = by_path[m["path"]]
            t = targets[e.name]
            ev = m["evidence"]
            scores = {int(k): v for k, v in scored_by_class(ev).items()}
            rank = sorted(scores, key=scores.get, reverse=True).index(t) + 1 if t is not None else None
            before = tables.get((e.name, seed))
            was = ("—" if before is None else
                   f"{before['found'] if before['found'] is not None else 'none'} ({before['score']:.2f})")
            now = f"{m['target_class'] if m['suspected'] else 'none'} ({m['score']:.2f})"
            what = f"{e.attack} -> {t}" if t is not None else "clean"
            tail = f"; target scores {scores[t]:.2f}, rank {rank}" if t is not None else ""
            print(f"  {e.name:16s} {what:16s} flagged with reference: {now:12s} without ({src}): {was:12s} "
                  f"{m['seconds']:.1f} s{tail}", flush=True)
            per_seed.setdefault(e.name, {})[seed] = _run(m)
            row = (e.name, seed, m["score"], scores.get(t) if t is not None else None)
            if t is None:
                (clean_flagged if m["suspected"] else clean_ok).append(row)
            else:
                (found if m["suspected"] and m["target_class"] == t else missed).append(row)
            if before is not None:
                table_seed.setdefault(e.name, {})[seed] = before
                table.append((t, before["found"], before["score"],
                              scored_by_class(before["evidence"]) if "evidence" in before else None))
    print(f"backdoored, target found: {len(found)} of {len(found) + len(missed)} runs"
          + (f"; missed: {', '.join(f'{n} seed {s} (target {ts:.2f}, top {sc:.2f})' for n, s, sc, ts in missed)}"
             if missed else ""))
    if found + missed:
        print(f"  lowest target score {min(r[3] for r in found + missed):.2f}, mean "
              f"{sum(r[3] for r in found + missed) / len(found + missed):.2f}")
    print(f"clean, flagged: {len(clean_flagged)} of {len(clean_flagged) + len(clean_ok)} runs"
          + (f" ({', '.join(f'{n} seed {s} {sc:.2f}' for n, s, sc, _ in clean_flagged)})" if clean_flagged else ""))
    if clean_ok + clean_flagged:
        print(f"  highest clean score {max(r[2] for r in clean_ok + clean_flagged):.2f}, mean "
              f"{sum(r[2] for r in clean_ok + clean_flagged) / len(clean_ok + clean_flagged):.2f}")
    if len(seeds) > 1:
        _searches(per_seed, targets, seeds, "as well")
    if table:
        bad = [(t, f, sc) for t, f, _, sc in table if t is not None]
        scored = [sc[str(t)] for t, _, sc in bad if sc is not None]
        clean = [(f, score) for t, f, score, _ in table if t is None]
        print(f"the same runs without a reference ({'same call' if without else 'scan tables'}, {len(table)} runs): "
              f"target found "
              f"{sum(f == t for t, f, _ in bad)} of {len(bad)} runs"
              + (f", lowest target score {min(scored):.2f}, mean {sum(scored) / len(scored):.2f} ({len(scored)} "
                 f"runs with evidence)" if scored else "")
              + f"; clean flagged {sum(f is not None for f, _ in clean)} of {len(clean)} runs"
              + (f", highest clean score {max(v for _, v in clean):.2f}, mean "
                 f"{sum(v for _, v in clean) / len(clean):.2f}" if clean else ""))
        if len(seeds) > 1:
            _searches(table_seed, targets, seeds, "without a reference")
    return 0


def _run(m: dict) -> dict:
    """A scan report's model entry as a run of the scan tables (what the summaries and consensus_verdict read; a
    report's target_class is null where nothing was flagged, as a table's found)."""
    return {"suspected": m["suspected"], "threshold": m["threshold"], "evidence": m["evidence"],
            "found": m["target_class"], "score": m["score"]}


def _searches(per_seed: dict, targets: dict, seeds: list[int], how: str) -> None:
    """What `--searches N` (N = the seeds run) decides on these runs: each search is the run at its seed; a model
    whose runs cannot tell (table rows without evidence flagging different classes) counts as not flagged."""
    from benchmarks.searches import consensus_verdict

    hit = miss = flagged = clean = 0
    for name, runs in per_seed.items():
        if not all(s in runs for s in seeds):
            continue
        k, score = consensus_verdict([runs[s] for s in seeds]) or (None, None)
        t = targets[name]
        if t is None:
            clean += 1
            flagged += k is not None
        else:
            hit += k == t
            miss += k != t
        if (t is None) != (k is None) or (t is not None and k != t):
            shown = f" ({score:.2f})" if score is not None else ""
            print(f"  --searches {len(seeds)} {how}: {name} flagged {k if k is not None else 'none'}{shown}"
                  + (f", target {t}" if t is not None else ", clean"))
    print(f"with --searches {len(seeds)} {how} (the runs at seeds {', '.join(map(str, seeds))} are its searches): "
          f"target found {hit} of {hit + miss} backdoored models; clean flagged {flagged} of {clean}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
