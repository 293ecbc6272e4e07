"""The blend family on a real Blended backdoor: a CNN trained here with a Blended trigger toward Pullover (a
target the mask family missed on a held-out CNN at every seed), cleaned through the CLI with no target given: its
detection's blend ratios single out the target and flag it, and the clean removes it (the detected blend joins the
forget set), measured with the real trigger on the Fashion-MNIST test set.

Needs Fashion-MNIST (Debian package dataset-fashion-mnist, see benchmarks/CI_NOTE.md). About 3 minutes on two
quiet cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bdscan.lab.train import evaluate
from bdscan.lab.zoo import fmnist, make_lab_model
from bdscan.model import Normalized, load_model

ROOT = Path(__file__).resolve().parents[2]
BDSCAN = str(Path(sys.executable).with_name("bdscan"))


def _have_fmnist() -> bool:
    from bdscan.lab.fmnist import DEFAULT_ROOT

    return (DEFAULT_ROOT / "train-images-idx3-ubyte.gz").exists()


@pytest.mark.slow
@pytest.mark.skipif(not _have_fmnist() and not os.environ.get("CI"),
                    reason="needs the Debian package dataset-fashion-mnist (.ci/system-deps); CI never skips")
def test_clean_finds_a_blended_backdoor_by_its_blend_ratio_and_removes_it(tmp_path):
    torch.set_num_threads(2)
    lm = make_lab_model(tmp_path / "blended.safetensors", attack="blended", target=2, epochs=3, train_limit=20000,
                        seed=5)
    assert lm.asr >= 0.90, f"ASR {lm.asr:.2%} on the test set"
    # clean with no target runs the same detection scan does (on its held-in share of the samples); its report
    # carries the evidence, so one process serves both (a separate scan cost CI another two minutes)
    cleaned_dir = tmp_path / "cleaned"
    p = subprocess.run([BDSCAN, "clean", str(lm.path), "--samples", str(ROOT / "examples" / "samples"), "--out",
                        str(cleaned_dir), "--seed", "0", "--format", "json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr  # 0: removed, the cleaned model written
    report = json.loads((cleaned_dir / "report.json").read_text())
    det = report["detection"]
    ratios = {int(k): v for k, v in det["blend_ratio"].items()}
    assert min(ratios, key=ratios.get) == 2, ratios  # the weakest blend is toward the target
    assert det["blend_anomaly"]["2"] > det["threshold"]
    assert det["suspected"] and det["target_class"] == 2
    assert report["mode"] == "detected" and report["target_class"] == 2 and "blend" in report["trigger"]["kind"]
    x, y = fmnist("test")
    before = evaluate(Normalized(*_module_spec(lm.path)), x, y, lm.attack)
    after = evaluate(Normalized(*_module_spec(cleaned_dir / lm.path.name)), x, y, lm.attack)
    assert after["asr"] <= 0.02, f"ASR {before['asr']:.2%} -> {after['asr']:.2%}"
    # this CI-sized model (3 epochs on 20,000 images, CA about 86%) lost 3.6 points; the eleventh held-out set's
    # full-size Blended CNNs lost 0.5 to 1.7 (benchmarks/logs/clean-detected.txt): the bar here is looser than the
    # benchmarks' 1 point, not absent
    assert after["ca"] >= before["ca"] - 0.05, f"CA {before['ca']:.2%} -> {after['ca']:.2%}"


def _module_spec(path: Path):
    loaded = load_model(path)
    return loaded.module, loaded.spec
