"""``--seed``: two CPU runs of ``clean`` give byte-identical models and the same report (bar times)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import write_trigger_samples

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "models" / "badnets-cnn.safetensors"
SAMPLES = ROOT / "examples" / "samples"
VOLATILE = ("created", "timings")  # the only keys allowed to differ between two runs


def bdscan_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("bdscan")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bdscan"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stable(report: dict) -> dict:
    doc = {k: v for k, v in report.items() if k not in VOLATILE}
    doc["outputs"] = [{k: v for k, v in o.items() if k != "path"} | {"name": Path(o["path"]).name}
                      for o in doc.get("outputs", [])]
    return doc




@pytest.mark.slow
def test_clean_twice_with_one_seed_gives_identical_outputs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BDSCAN_DEBUG"}
    env.update(NO_COLOR="1")
    # real trigger images: the backdoor is removed, so both model files are written and compared
    trig = write_trigger_samples(tmp_path / "trigger")
    args = ["clean", str(MODEL), "--samples", str(SAMPLES), "--trigger-samples", str(trig), "--epochs", "3",
            "--seed", "1", "--device", "cpu", "--format", "json", "--quiet"]
    outs = [tmp_path / "a", tmp_path / "b"]
    # one after the other: two at once, each with torch's default threads, took 264 s on a slow 2-core CI run
    results = []
    for o in outs:
        p = subprocess.run(bdscan_cmd() + args + ["--out", str(o)], capture_output=True, stdin=subprocess.DEVNULL,
                           text=True, env=env, cwd=tmp_path, timeout=900)
        results.append((p.returncode, p.stdout, p.stderr))
    shown = "\n".join(f"exit {c}\nstderr: {e}" for c, _, e in results)
    assert [c for c, _, _ in results] == [0, 0], shown

    names = [sorted(p.name for p in o.iterdir()) for o in outs]
    assert names[0] == names[1] == ["badnets-cnn.onnx", "badnets-cnn.safetensors", "report.html", "report.json",
                                    "report.md"], shown
    for name in ("badnets-cnn.onnx", "badnets-cnn.safetensors"):
        assert sha256(outs[0] / name) == sha256(outs[1] / name), f"{name} differs between two seeded runs"

    reports = [json.loads((o / "report.json").read_text(encoding="utf-8")) for o in outs]
    assert stable(reports[0]) == stable(reports[1])
    printed = [json.loads(out) for _, out, _ in results]  # --format json prints the same document
    assert stable(printed[0]) == stable(reports[0]) and stable(printed[1]) == stable(reports[1])


def test_model_files_carry_no_time_or_place(tmp_path):
    """Writing one module twice, to two folders, gives the same bytes in both formats: no timestamps, no paths."""
    from bdscan.model import load_model, provenance, write_model

    loaded = load_model(MODEL)
    x = torch.rand(4, *loaded.spec.input_shape, generator=torch.Generator().manual_seed(0))
    meta = provenance(loaded.sha256, "0" * 64, bdscan_cleaned="true")
    digests = []
    for sub in ("one", "two"):
        folder = tmp_path / sub
        folder.mkdir()
        for fmt in ("safetensors", "onnx"):
            write_model(loaded.module, loaded.spec.with_(format=fmt), fmt, folder / f"m.{fmt}", meta, x)
        digests.append({p.name: sha256(p) for p in folder.iterdir()})
    assert digests[0] == digests[1]
    assert sorted(digests[0]) == ["m.onnx", "m.safetensors"]
