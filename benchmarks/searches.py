"""What `bdscan scan --searches 3` decides, read from the scan tables' per-seed runs.

    python -m benchmarks.searches [--check MODEL_NAME ...]

With ``--searches N`` a class is flagged only when it scores above the threshold in every one of N trigger
searches (seeds SEED to SEED+N-1), at its lowest score (bdscan.detect.consensus). The scan tables scan every
model once at each of seeds 0, 1 and 2, so their runs hold `--searches 3` at seed 0 without a rerun: each search
is `detect` at its seed, the same work alone or among others (tests/test_detect.py checks it; ``--check`` runs
one model through the CLI). Per class, the lowest score over the seeds comes from each run's evidence;
runs from before evidence was kept give only the class each flagged: a class flagged at every seed is flagged (its
lowest score is above the threshold), a model that some seed did not flag is not (every class was at or under the
threshold there), and seeds flagging different classes cannot be told apart.
Prints one block per table and group, model by model. ``--check`` runs `bdscan scan --searches 3` itself on the
named models (any table's) and compares each search's verdict and score, and the combined verdict, with what the
per-seed runs give.
"""

from __future__ import annotations

import json
import sys

from bdscan.report.plots import scored_by_class
from benchmarks.zoo import (HELD_OUT_2_MODELS, HELD_OUT_3_MODELS, HELD_OUT_4_MODELS, HELD_OUT_MODELS, HERE, LAB_MODELS,
                            SCAN_MODELS)

TABLES = [
    ("scan_results.json", [("settings tuned on", SCAN_MODELS), ("added later", LAB_MODELS),
                           ("first held-out set", HELD_OUT_MODELS)]),
    ("scan_results_held_out_2.json", [("second held-out set", HELD_OUT_2_MODELS)]),
    ("scan_results_held_out_3.json", [("third held-out set", HELD_OUT_3_MODELS)]),
    ("scan_results_held_out_4.json", [("fourth held-out set", HELD_OUT_4_MODELS)]),
]


def consensus_verdict(runs: list[dict]) -> tuple[int | None, float | None] | None:
    """(class flagged or None, its lowest score or None) for one model's runs at the seeds of one `--searches`
    call; None where the runs cannot tell (no evidence, and the seeds flagged different classes)."""
    if any(r.get("suspected") is None for r in runs):
        return None
    threshold = runs[0]["threshold"]
    if all("evidence" in r for r in runs):
        scores = [scored_by_class(r["evidence"], flaggable=True) for r in runs]
        lowest = {k: min(s[k] for s in scores) for k in scores[0]}
        k = max(lowest, key=lowest.get)
        return (int(k) if lowest[k] > threshold else None), lowest[k]
    found = {r["found"] for r in runs}
    if None in found:  # a seed that flagged nothing had every class at or under the threshold
        return None, None
    if len(found) == 1:
        return found.pop(), min(r["score"] for r in runs)
    return None  # seeds flagged different classes


def summarise(rows: list[dict], seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Per model with a run at every one of ``seeds``: the single-search verdicts and the consensus one."""
    out = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        runs = {r.get("seed", 0): r for r in rows if r["model"] == name}
        if not all(s in runs for s in seeds):
            continue
        runs = [runs[s] for s in seeds]
        target = runs[0]["target"] if runs[0]["attack"] != "none" else None
        out[name] = {"attack": runs[0]["attack"], "target": target, "per_seed": [r.get("found") for r in runs],
                     "consensus": consensus_verdict(runs)}
    return out


def line(rows: list[dict], seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    """One sentence for a table: what `--searches N` at seed 0 would have decided, model by model."""
    s = summarise(rows, seeds)
    bad = {m: v for m, v in s.items() if v["attack"] != "none"}
    clean = {m: v for m, v in s.items() if v["attack"] == "none"}
    undecided = [m for m, v in s.items() if v["consensus"] is None]
    found = [m for m, v in bad.items() if v["consensus"] and v["consensus"][0] == v["target"]]
    flagged = [m for m, v in clean.items() if v["consensus"] and v["consensus"][0] is not None]
    once = [m for m, v in clean.items() if any(f is not None for f in v["per_seed"])]
    text = (f"with `--searches {len(seeds)}` (a class flagged only when each of seeds "
            f"{', '.join(map(str, seeds))} flags it): backdoored with the target class found {len(found)} of "
            f"{len(bad)}; clean flagged {len(flagged)} of {len(clean)} (flagged at some seed by one search: "
            f"{len(once)}{': ' + ', '.join(once) if once else ''})")
    if undecided:
        text += f"; not decidable from the runs kept: {', '.join(undecided)}"
    return text


def check(names: list[str]) -> int:
    """One real `bdscan scan --searches 3` per model against its table's runs at seeds 0, 1 and 2."""
    from benchmarks.common import run_cli, sample_dirs

    entries = {e.name: (e, file) for file, groups in TABLES for _, models in groups for e in models}
    differ = 0
    for name in names:
        entry, file = entries[name]
        rows = [r for r in json.loads((HERE / file).read_text()) if r["model"] == name]
        report = HERE / "out" / "scan" / f"{name}.searches3.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        rc, wall, _, stderr, _ = run_cli(["scan", str(entry.cli_path), "--samples", str(sample_dirs(entry, None)[0]),
                                          "--searches", "3", "--format", "json", "-o", str(report)])
        m = json.loads(report.read_text())["models"][0]
        by_seed = {r["seed"]: r for r in rows}
        got = [(s["seed"], s["suspected"], s["target_class"], s["score"]) for s in m["evidence"]["searches"]]
        want = [(k, by_seed[k]["suspected"], by_seed[k]["found"], round(by_seed[k]["score"], 4)) for k in (0, 1, 2)]
        expect = summarise(rows)[name]["consensus"]
        # evidence and scores are rounded to 4 places in reports: the lowest of rounded scores may differ by 1e-4
        same = got == want and expect is not None and m["target_class"] == expect[0] and (
            expect[1] is None or abs(m["score"] - expect[1]) <= 2e-4)
        differ += not same
        print(f"{name}: --searches 3 exit {rc}, {wall:.1f} s wall, flagged "
              f"{m['target_class'] if m['suspected'] else '—'} at {m['score']:.4f}; per search {got}; "
              f"{'the same as' if same else 'DIFFERENT from'} the runs at seeds 0, 1, 2 {want} "
              f"(consensus {expect})")
    return 1 if differ else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        return check(argv[1:])
    for file, groups in TABLES:
        path = HERE / file
        if not path.exists():
            print(f"{file}: not run")
            continue
        rows = json.loads(path.read_text())
        for label, models in groups:
            names = {e.name for e in models}
            group = [r for r in rows if r["model"] in names]
            print(f"{file}, {label}: {line(group)}")
            for name, v in summarise(group).items():
                c = v["consensus"]
                verdict = "undecidable" if c is None else ("—" if c[0] is None else f"{c[0]} ({c[1]:.2f})")
                seeds = " / ".join("—" if f is None else str(f) for f in v["per_seed"])
                print(f"  {name} ({v['attack']}{'' if v['target'] is None else ' ' + str(v['target'])}): "
                      f"per seed {seeds}; --searches 3: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
