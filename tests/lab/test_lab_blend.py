"""The blend family on a real Blended backdoor: the CNN test_lab_small trains with a Blended trigger toward
T-shirt/top (one training for both), cleaned through the CLI with no target given: its detection's blend ratios
single out the target and flag it, and the clean removes it (the detected blend joins the forget set), measured with
the real trigger on the Fashion-MNIST test set.

It used to train its own CNN toward Pullover (seed 5), a target the mask family missed on a held-out CNN at every
seed; that model passed here too, and is now the zoo's blended-cnn-t2-s5-ci (benchmarks/clean_blend_target.py).
test_lab_small cleans the model here with its target given (the blend search then runs over every class too).

Needs Fashion-MNIST (Debian package dataset-fashion-mnist, see benchmarks/CI_NOTE.md). About 2.5 minutes on two
quiet cores once the model is trained.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bdscan.lab.train import evaluate
from bdscan.lab.zoo import fmnist
from bdscan.model import Normalized, load_model
from tests.lab.conftest import needs_fmnist

ROOT = Path(__file__).resolve().parents[2]
BDSCAN = str(Path(sys.executable).with_name("bdscan"))


@pytest.mark.slow
@needs_fmnist
def test_clean_finds_a_blended_backdoor_by_its_blend_ratio_and_removes_it(tmp_path, lab_model):
    torch.set_num_threads(2)
    lm = lab_model("blended", target=0, seed=0)  # the same model test_lab_small cleans with its target given
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
    assert min(ratios, key=ratios.get) == 0, ratios  # the weakest blend is toward the target
    assert det["blend_anomaly"]["0"] > det["threshold"]
    assert det["suspected"] and det["target_class"] == 0
    assert report["mode"] == "detected" and report["target_class"] == 0 and "blend" in report["trigger"]["kind"]
    x, y = fmnist("test")
    before = evaluate(Normalized(*_module_spec(lm.path)), x, y, lm.attack)
    after = evaluate(Normalized(*_module_spec(cleaned_dir / lm.path.name)), x, y, lm.attack)
    assert after["asr"] <= 0.02, f"ASR {before['asr']:.2%} -> {after['asr']:.2%}"
    # a CI-sized model (3 epochs on 20,000 images) loses more than a full-size one (the Pullover one that was here lost
    # 3.6 points; the eleventh held-out set's Blended CNNs 0.5 to 1.7, benchmarks/logs/clean-detected.txt): the bar
    # here is looser than the benchmarks' 1 point, not absent
    assert after["ca"] >= before["ca"] - 0.05, f"CA {before['ca']:.2%} -> {after['ca']:.2%}"


def _module_spec(path: Path):
    loaded = load_model(path)
    return loaded.module, loaded.spec
