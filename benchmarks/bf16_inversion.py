"""Why trigger inversion runs in full fp32 on CUDA: the bundled example cleaned (target known) with bf16 autocast
emulated on the CPU in one stage at a time, measured on its 2,000 hold-out images.

    python -m benchmarks.bf16_inversion [fp32|bf16-invert|bf16-repair ...]

bf16-invert puts the trigger inversion's forward passes under bf16 (as the CUDA path did before); bf16-repair
does the same for the repair fine-tune only (as the CUDA path still does). Prints the synthesised mask's size
and the attack success and clean accuracy after cleaning.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import bdscan.detect as detect
import bdscan.repair as repair
from bdscan.lab.train import evaluate
from bdscan.lab.zoo import load_attack, load_npz
from bdscan.model import Normalized, load_model
from bdscan.pipeline import clean
from bdscan.settings import CleanSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODEL = EXAMPLES / "models" / "badnets-cnn.safetensors"


def bf16(device):
    return torch.autocast("cpu", dtype=torch.bfloat16)


def run(mode: str) -> dict:
    saved = detect.full_precision, repair.autocast
    if mode == "bf16-invert":
        detect.full_precision = lambda device: bf16(device)
    elif mode == "bf16-repair":
        repair.autocast = bf16
    elif mode != "fp32":
        raise SystemExit(f"unknown mode {mode!r}")
    try:
        out = clean(MODEL, EXAMPLES / "samples", CleanSettings(target_class=0, device="cpu"))
    finally:
        detect.full_precision, repair.autocast = saved
    original = load_model(MODEL)
    x, y = load_npz(EXAMPLES / "holdout.npz")
    res = evaluate(Normalized(out.module, original.spec), x, y, load_attack(MODEL, original.spec))
    return {"mode": mode, "mask_l1": round(out.trigger.mask_l1, 4), "asr_after": round(res["asr"], 4),
            "ca_after": round(res["ca"], 4)}


if __name__ == "__main__":
    torch.set_num_threads(2)
    for m in sys.argv[1:] or ["fp32", "bf16-invert", "bf16-repair"]:
        print(run(m), flush=True)
