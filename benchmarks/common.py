"""Shared by the benchmark scripts: the Fashion-MNIST test-set split, sample folders, measuring, machine info."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.zoo import CACHE, EVERY_MODEL, ROOT, Entry, make

PER_CLASS = 10  # clean samples per class handed to bdscan
TRIGGER_IMAGES = 30  # images carrying the real trigger, for the BDK setting
MEASURE = 2000  # held-out test images for CA and ASR
BDSCAN = str(Path(sys.executable).with_name("bdscan"))
# where bdscan is not installed as a script (a GPU machine running from the checkout): python -m bdscan
BDSCAN_CMD = [BDSCAN] if Path(BDSCAN).exists() else [sys.executable, "-m", "bdscan"]


def split_indices(y: torch.Tensor, target: int = 0):
    """Disjoint test-set indices: samples (first 10 per class, as examples/samples), trigger images
    (the next ones of the non-target classes, round robin), and the measure set (the first 2,000 of the rest)."""
    samples = torch.cat([torch.nonzero(y == k).flatten()[:PER_CLASS] for k in range(10)])
    used = torch.zeros(len(y), dtype=torch.bool)
    used[samples] = True
    others = [k for k in range(10) if k != target]
    pools = {k: [int(i) for i in torch.nonzero((y == k) & ~used).flatten()[:TRIGGER_IMAGES]] for k in others}
    trig = []
    while len(trig) < TRIGGER_IMAGES:
        for k in others:
            if len(trig) < TRIGGER_IMAGES:
                trig.append(pools[k].pop(0))
    trig = torch.tensor(trig)
    used[trig] = True
    measure = torch.nonzero(~used).flatten()[:MEASURE]
    return samples, trig, measure


def test_set(size: int, channels: int, dataset: str = "fashion-mnist"):
    from bdscan.lab.zoo import fmnist

    return fmnist("test", size, channels, dataset=dataset)


def write_folder(root: Path, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> Path:
    from bdscan.data import save_image

    shutil.rmtree(root, ignore_errors=True)
    for i in idx.tolist():
        folder = root / str(int(y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        save_image(x[i], folder / f"test{i:05d}.png")
    return root


def sample_dirs(entry: Entry, attack) -> tuple[Path, Path | None, torch.Tensor, torch.Tensor]:
    """(samples dir, trigger-samples dir or None, measure x, measure y) for one model's input size."""
    x, y = test_set(entry.size, entry.channels, entry.dataset)
    target = attack.target if attack is not None else 0
    samples, trig, measure = split_indices(y, target)
    tag = f"{entry.channels}x{entry.size}" + ("" if entry.dataset == "fashion-mnist" else f"-{entry.dataset}")
    sdir = CACHE / "data" / f"samples-{tag}"
    if entry.bundled and entry.size == 28:
        sdir = ROOT / "examples" / "samples"  # the same first-10-per-class images
    elif not sdir.exists():
        write_folder(sdir, x, y, samples)
    tdir = None
    if attack is not None:
        tdir = CACHE / "data" / f"trigger-{entry.name}"
        xt = x.clone()
        xt[trig] = attack.apply(x[trig])
        write_folder(tdir, xt, y, trig)
    return sdir, tdir, x[measure], y[measure]


def zoo_models(names: list[str]):
    """Per name in benchmarks.zoo: (entry, lab model, samples dir, measure x, measure y), the model made first if
    needed."""
    entries = {e.name: e for e in EVERY_MODEL}
    for name in names:
        e = entries[name]
        lm = make(e)
        sdir, _, x, y = sample_dirs(e, lm.attack)
        yield e, lm, sdir, x, y


def measure(model_path: Path, attack, x: torch.Tensor, y: torch.Tensor) -> dict:
    from bdscan.lab.train import evaluate
    from bdscan.model import Normalized, load_model

    lm = load_model(model_path)
    return evaluate(Normalized(lm.module, lm.spec), x, y, attack)


def run_cli(args: list[str]) -> tuple[int, float, str, str, float]:
    """Run the bdscan CLI: (exit code, wall seconds, stdout, stderr, child's peak RSS in MiB)."""
    return run_child([*BDSCAN_CMD, *args])


def run_child(cmd: list[str]) -> tuple[int, float, str, str, float]:
    """Run a child process; os.wait4 gives its own peak resident memory (ru_maxrss, KiB on Linux)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return p.returncode, wall, fo.read(), fe.read(), usage.ru_maxrss / 1024


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU cores (`nproc` = {len(os.sched_getaffinity(0))}), {cpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}; machine shared with other jobs")


def pct(v) -> str:
    return "—" if v is None else f"{v:.2%}"


def write_json(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def earlier_rows(path: Path, wanted: set[str]) -> list[dict]:
    """A partial rerun (some models named) keeps the other models' rows from the last run."""
    if not path.exists() or not wanted:
        return []
    return [r for r in json.loads(path.read_text()) if r["model"] not in wanted]


def take_seed(argv: list[str], default: int = 0) -> tuple[int, list[str]]:
    """``--seed N`` taken out of ``argv``: (the seed, the rest of argv)."""
    if "--seed" not in argv:
        return default, argv
    i = argv.index("--seed")
    return int(argv[i + 1]), argv[:i] + argv[i + 2:]


def take_seeds(argv: list[str], default: list[int] = (0, 1, 2)) -> tuple[list[int], list[str]]:
    """``--seeds 0,1,2`` taken out of ``argv``: (the seeds, the rest of argv)."""
    if "--seeds" not in argv:
        return list(default), argv
    i = argv.index("--seeds")
    return [int(v) for v in argv[i + 1].split(",")], argv[:i] + argv[i + 2:]
