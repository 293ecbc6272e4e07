"""Issue 4: bdscan against peer defences (benchmarks/peers.py) on the lab's backdoored models.

    python -m benchmarks.run [MODEL_NAME ...]

Every defence gets the same budget: 10 clean test images per class (the images bdscan gets as --samples).
Each (model, defence) runs in its own child process, so wall time and peak memory (the child's ru_maxrss,
torch itself included) are its own. bdscan rows come from benchmarks/clean_results.json when
benchmarks.clean_table measured that model, else `bdscan clean --target-class` is run here.
CA and ASR are measured on the same 2,000 held-out test images as benchmarks.clean_table.
Writes benchmarks/RESULTS.md and results.json.

From nothing, one command trains every lab model missing from the cache and measures every row:
`python -m benchmarks.run --train --with-5pct` (hours on 2 cores: the resnet18s train 6 to 16 min each, ANP takes
4 to 14 min per model and budget). Without `--train`, a model not in the cache is skipped and RESULTS.md lists it.

`--only-5pct` runs only the peers' 5%-budget rows and `--peers a,b` only those peers; both keep every other row of
the last run (bdscan's included).

On a GPU machine: `BENCH_DEVICE=cuda python -m benchmarks.run --fresh --with-5pct --json FILE [MODEL ...]` runs the
peers on the GPU, measures bdscan there too (--fresh: not from clean_results.json) and writes raw rows to FILE only
(several such runs in parallel, one per model group); `--merge-gpu FILE ...` turns them into RESULTS_GPU.md.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.clean_table import run_one, verdict
from benchmarks.common import earlier_rows, machine, measure, pct, run_child, sample_dirs, split_indices, test_set, write_json
from benchmarks.zoo import CLEAN_MODELS, HERE, LAB_MODELS, SCAN_MODELS, make

PEERS = ("finetune", "fine-pruning", "clp", "anp")


def entries():
    seen, out = set(), []
    for e in CLEAN_MODELS + SCAN_MODELS + LAB_MODELS:
        if e.attack and e.name not in seen:
            seen.add(e.name)
            out.append(e)
    return out


BUDGET_5PCT = 3000  # 5% of the 60,000 training images: the peers' usual budget


def one(name: str, defence: str, budget: str = "samples") -> dict:
    """Child process: apply one peer defence to one model and measure it. ``budget``: "samples" (the 10 clean
    test images per class bdscan gets) or "5pct" (5% of the clean training set, seeded draw)."""
    from benchmarks.peers import DEFENCES
    from bdscan.model import Normalized

    torch.set_num_threads(2)
    device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
    entry = next(e for e in entries() if e.name == name)
    lm = make(entry, progress=None)
    x, y = test_set(entry.size, entry.channels)
    samples, _, keep = split_indices(y, lm.attack.target)
    xs = (x[samples] * 255 + 0.5).floor() / 255  # the 8-bit PNG values bdscan reads
    from bdscan.model import load_model

    loaded = load_model(entry.path)
    model = Normalized(loaded.module, loaded.spec)
    from bdscan.lab.train import evaluate

    t0 = time.perf_counter()
    ys = y[samples]
    if budget == "5pct":
        from bdscan.lab.zoo import fmnist

        x_tr, y_tr = fmnist("train", entry.size, entry.channels)
        pick = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(0))[:BUDGET_5PCT]
        xs, ys = x_tr[pick], y_tr[pick]
    torch.manual_seed(0)
    cleaned = DEFENCES[defence](model.to(device), xs.to(device), ys.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    after = evaluate(cleaned, x[keep], y[keep], lm.attack)
    return {"ca_after": after["ca"], "asr_after": after["asr"], "defence_s": round(seconds, 1)}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(one(*argv[1:4])))
        return 0
    budgets = ["samples"]
    if "--with-5pct" in argv:  # also each peer with 5% of the training set (minutes more per model)
        argv = [a for a in argv if a != "--with-5pct"]
        budgets.append("5pct")
    only_5pct = "--only-5pct" in argv  # just the 5%-budget rows; every other row of the last run is kept
    if only_5pct:
        argv = [a for a in argv if a != "--only-5pct"]
        budgets = ["5pct"]
    peers = PEERS
    if "--peers" in argv:  # a subset of the peers, e.g. --peers finetune,fine-pruning
        i = argv.index("--peers")
        peers = tuple(argv[i + 1].split(","))
        del argv[i:i + 2]
        unknown = [d for d in peers if d not in PEERS]
        if unknown:
            print(f"unknown peer defence: {', '.join(unknown)} (known: {', '.join(PEERS)})", file=sys.stderr)
            return 2
    if argv[:1] == ["--report-only"]:  # rebuild RESULTS.md from results.json, run nothing
        print(write_md(json.loads((HERE / "results.json").read_text())))
        return 0
    if argv[:1] == ["--merge-gpu"]:  # raw rows of parallel GPU runs -> RESULTS_GPU.md
        rows = [r for f in argv[1:] for r in json.loads(Path(f).read_text())]
        write_json(HERE / "results_gpu.json", rows)
        print(write_md(rows, gpu=True))
        return 0
    fresh = "--fresh" in argv
    only_bdscan = "--bdscan-only" in argv  # re-measure bdscan's rows, keep the peers' rows of the last run
    train = "--train" in argv  # train the lab models not yet cached instead of skipping them (hours on 2 cores)
    argv = [a for a in argv if a not in ("--fresh", "--bdscan-only", "--train")]
    out_json = None
    if "--json" in argv:
        i = argv.index("--json")
        out_json = Path(argv[i + 1])
        del argv[i:i + 2]
    torch.set_num_threads(2)
    wanted = set(argv)
    old = out_json or HERE / "results.json"
    peers_only = only_5pct or peers != PEERS  # some peers' rows only: every other row of the last run stays
    if peers_only and old.exists():
        rows = json.loads(old.read_text())
    elif only_bdscan and old.exists():
        rows = [r for r in json.loads(old.read_text()) if not r["defence"].startswith("bdscan")
                or (wanted and r["model"] not in wanted)]
    else:
        rows = earlier_rows(old, wanted) if out_json is None else []
    cleaned_rows = json.loads((HERE / "clean_results.json").read_text()) if (
        (HERE / "clean_results.json").exists() and not fresh) else []
    for entry in entries():
        if wanted and entry.name not in wanted:
            continue
        if not entry.path.exists() and train:
            print(f"{entry.name}: training", flush=True)
            make(entry, device=os.environ.get("BENCH_DEVICE", "cpu"))
        if not entry.path.exists():
            print(f"{entry.name}: not in the cache (train it with python -m benchmarks.zoo {entry.name} or pass "
                  "--train); skipped")
            continue
        lm = make(entry, progress=None)
        _, _, x, y = sample_dirs(entry, lm.attack)
        before = measure(entry.path, lm.attack, x, y)
        base = {"model": entry.name, "ca_before": before["ca"], "asr_before": before["asr"]}
        mine = [r for r in cleaned_rows if r["model"] == entry.name]
        if peers_only:
            mine = []  # bdscan's rows are kept as they are
        elif not mine:
            sdir, tdir, _, _ = sample_dirs(entry, lm.attack)
            r = run_one(entry, "target-known", sdir, tdir, lm.attack.target)
            if r["cleaned"]:
                a = measure(Path(r["cleaned"]), lm.attack, x, y)
                r.update(ca_after=a["ca"], asr_after=a["asr"])
            mine = [r]
        for r in mine:
            rows.append({**base, "defence": f"bdscan ({r['setting']})", "ca_after": r.get("ca_after"),
                         "asr_after": r.get("asr_after"), "wall_s": r["wall_s"], "peak_rss_mib": r.get("peak_rss_mib")})
            if r.get("rc"):  # exit 1: backdoor not removed, no model written; other codes: a failure
                rows[-1].update(exit_code=r["rc"], message=r.get("error"))
            print(json.dumps(rows[-1]), flush=True)
        write_json(old, rows)
        for budget, d in [(b, d) for b in budgets for d in peers if not only_bdscan]:
            if budget == "5pct" and d == "clp":
                continue  # data-free: the same result on any budget
            rc, wall, out, err, rss = run_child([sys.executable, "-m", "benchmarks.run", "--one", entry.name, d,
                                                 budget])
            label = d if budget == "samples" else f"{d} (5% train)"
            rows = [r for r in rows if not (r["model"] == entry.name and r["defence"] == label)]
            row = {**base, "defence": label, "wall_s": round(wall, 1), "peak_rss_mib": round(rss)}
            if rc == 0:
                row.update(json.loads(out.strip().splitlines()[-1]))
            else:
                row.update(ca_after=None, asr_after=None, error=(err.strip().splitlines() or ["?"])[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_json(old, rows)
            if out_json is None:
                write_md(rows)  # a run cut short still leaves a table of what it measured
        if out_json is not None:
            write_json(old, rows)
    write_json(old, rows)
    if out_json is None:
        print(write_md(rows))
    return 0


def _gpu_machine() -> str:
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return f"{name}; peers and bdscan on CUDA; {machine()}"


def write_md(rows, gpu: bool = False) -> str:
    md = "\n".join(["# bdscan against peer defences (issue 4)" + (": GPU run" if gpu else ""), "",
                    f"Machine: {_gpu_machine() if gpu else machine()}.", "",
                    "Budget: 10 clean test images per class for every defence, and for the peers marked "
                    "\"(5% train)\" their usual budget, 3,000 clean training images (5%; CLP is data-free, so it "
                    "has no such row; `--with-5pct`). CA and ASR on 2,000 held-out "
                    "Fashion-MNIST test images. Wall time and peak RSS are those of the child process doing the "
                    "work (process start, torch import and model loading included). Peer defences: see "
                    "benchmarks/peers.py for each paper's rule and where this implementation departs from it. "
                    "The lab's clean models (one or two per architecture) have no backdoor to remove: they are the "
                    "false-alarm check of `bdscan scan`, in SCAN_RESULTS.md."
                    + ("" if gpu else " A row's before and after are measured in the same invocation, on the same images; the rows come "
                       "from several invocations on the same machine (naming models, `--only-5pct` or `--peers` keeps "
                       "the other rows)."), "",
                    _table(rows), "", "## Per defence", "", _summary(rows), "", _missing(rows), "",
                    "Produced by `python -m benchmarks.run`; raw values in benchmarks/"
                    + ("results_gpu.json." if gpu else "results.json."), ""] + ([] if gpu else [_gpu_section(), ""]))
    (HERE / ("RESULTS_GPU.md" if gpu else "RESULTS.md")).write_text(md)
    return md


def _gpu_section() -> str:
    """Issue 9: the GPU check (benchmarks/gpu_check.sh), from gpu_results.json when a GPU run recorded one."""
    path = HERE / "gpu_results.json"
    if not path.exists():
        return "## GPU check\n\nNot run: no GPU machine was available (run benchmarks/gpu_check.sh on one)."
    doc = json.loads(path.read_text())
    head = ["model (224x224)", "train s", "CA before", "CA after", "ASR before", "ASR after", "clean s (excl. load)",
            "stages s", "peak GPU GiB clean", "scan s", "scan verdict", "peak GPU GiB scan"]
    lines = [f"## GPU check: {doc['card']}, torch {doc['header']['torch']}, {doc['date']}", "",
             "BadNets (target 0) trained for one epoch on 12,000 Fashion-MNIST images upscaled to 224x224 RGB; "
             "`clean` (target known, 10 images per class) and `scan` on CUDA with bf16 autocast; CA/ASR on 1,000 "
             "test images the tool never saw. Aim: `clean` of resnet50 under 10 s excluding model load.", "",
             f"Device tests (tests/test_gpu.py, tests/test_devices.py): {doc['device_tests']}."
             + (f" Failure: {doc['device_test_failure']}." if doc.get("device_test_failure") else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["rows"]:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["clean_stages"].items())
        verdict = f"suspected, class {r['scan_target']}" if r["scan_suspected"] else "not suspected"
        lines.append(f"| {r['arch']} | {r['train_s']:.1f} | {pct(r['ca_before'])} | {pct(r['ca_after'])} | "
                     f"{pct(r['asr_before'])} | {pct(r['asr_after'])} | {r['clean_s_excl_load']:.1f} | {stages} | "
                     f"{r['peak_gpu_gib_clean']:.2f} | {r['scan_s']:.1f} | {verdict} | {r['peak_gpu_gib_scan']:.2f} |")
    if doc.get("note"):
        lines += ["", doc["note"]]
    lines += ["", f"Source: {doc['source']}."]
    return "\n".join(lines)


def _missing(rows) -> str:
    done = {(r["model"], r["defence"]) for r in rows}
    gaps = [f"{e.name} ({d})" for e in entries() for d in PEERS if (e.name, d) not in done]
    lines = [f"Not measured (no row in results.json): {', '.join(gaps)}." if gaps else "Every pair measured."]
    if any(r["defence"].endswith("(5% train)") for r in rows):
        gaps = [f"{e.name} ({d})" for e in entries() for d in PEERS if d != "clp"
                and (e.name, f"{d} (5% train)") not in done]
        lines.append(f"Not measured with the 5% budget: {', '.join(gaps)}." if gaps
                     else "Every pair measured with the 5% budget.")
    return "\n\n".join(lines)


def _table(rows) -> str:
    head = ["model", "defence", "CA before", "CA after", "ASR before", "ASR after", "wall s", "peak RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {e.name: i for i, e in enumerate(entries())}
    # the lab's model order, bdscan first within a model (rows re-measured later are appended)
    for r in sorted(rows, key=lambda r: (order.get(r["model"], len(order)), not r["defence"].startswith("bdscan"))):
        lines.append(f"| {r['model']} | {r['defence']} | {pct(r['ca_before'])} | {pct(r.get('ca_after'))} | "
                     f"{pct(r['asr_before'])} | {pct(r.get('asr_after'))} | {r['wall_s']:.1f} | "
                     f"{r.get('peak_rss_mib') or '—'} |")
    return "\n".join(lines)


def _summary(rows) -> str:
    """Mean and worst per defence. A run that wrote no model (bdscan's verdict "not removed") counts with the
    model left as it was: ASR and CA unchanged."""
    head = ["defence", "models", "no model written", "both bars met", "mean ASR after", "worst ASR after",
            "mean CA drop (pt)", "worst CA drop (pt)", "mean wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in dict.fromkeys(r["defence"] for r in rows):
        rs = [r for r in rows if r["defence"] == d and not r.get("error")]
        if not rs:
            lines.append(f"| {d} | 0 | — | — | — | — | — | — | — |")
            continue
        kept = [r for r in rs if r.get("asr_after") is None]
        asr = [r["asr_before"] if r.get("asr_after") is None else r["asr_after"] for r in rs]
        drop = [0.0 if r.get("ca_after") is None else (r["ca_before"] - r["ca_after"]) * 100 for r in rs]
        met = sum(verdict(r) == "pass" for r in rs)  # issue 4's bar, as clean_table judges bdscan's runs
        lines.append(f"| {d} | {len(rs)} | {len(kept)} | {met} | {statistics.mean(asr):.2%} | {max(asr):.2%} | "
                     f"{statistics.mean(drop):.2f} | {max(drop):.2f} | {statistics.mean(r['wall_s'] for r in rs):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
