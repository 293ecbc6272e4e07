"""GPU check (issue 9): clean and scan torchvision resnet18 and resnet50 at 224x224 on CUDA, measured.

Makes each model in the run (BadNets toward class 0, trained briefly on Fashion-MNIST upscaled to 224x224 RGB),
then runs bdscan's clean (target known) and scan on the GPU and prints stage times, peak GPU memory, and
clean accuracy / attack success before and after on test images the tool never saw.

    python benchmarks/gpu_check.py                  # on a CUDA machine (see gpu_check.sh)
    python benchmarks/gpu_check.py --smoke          # tiny sizes on the CPU: checks the script itself
Fashion-MNIST comes from $FMNIST_ROOT (the IDX .gz files) or the Debian package's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from bdscan.data import save_image
from bdscan.lab.attacks import make_attack
from bdscan.lab.fmnist import load_fashion_mnist, to_tensor
from bdscan.lab.train import evaluate, train_backdoored
from bdscan.model import ModelSpec, Normalized, write_model
from bdscan.model.registry import build
from bdscan.outputs import write_clean_outputs
from bdscan.pipeline import clean, scan
from bdscan.settings import CleanSettings


def data(split: str, n: int, size: int, root):
    x, y = load_fashion_mnist(split, root)
    return to_tensor(x[:n], size=size, channels=3), torch.from_numpy(y[:n])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run that checks the script")
    ap.add_argument("--archs", default="torchvision.resnet18,torchvision.resnet50")
    ap.add_argument("--json", type=Path, help="also write the figures here (the rows of benchmarks/gpu_results.json)")
    args = ap.parse_args()
    rows = []
    device = "cpu" if args.smoke else "cuda"
    torch.backends.cudnn.benchmark = True
    size, n_train, epochs = (32, 2000, 1) if args.smoke else (224, 12000, 1)
    root = os.environ.get("FMNIST_ROOT")
    print(json.dumps({"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
                      "torch": torch.__version__, "size": size}), flush=True)
    x_tr, y_tr = data("train", n_train, size, root)
    x_te, y_te = data("test", 1000 + 200, size, root)
    x_samples, y_samples, x_eval, y_eval = x_te[:0], y_te[:0], x_te[200:], y_te[200:]
    chosen = torch.cat([torch.nonzero(y_te[:200] == k).flatten()[:10] for k in range(10)])
    x_samples, y_samples = x_te[chosen], y_te[chosen]
    work = Path(tempfile.mkdtemp(prefix="bdscan-gpu-"))
    samples = work / "samples"
    for i, (img, lab) in enumerate(zip(x_samples, y_samples)):
        (samples / str(int(lab))).mkdir(parents=True, exist_ok=True)
        save_image(img, samples / str(int(lab)) / f"{i}.png")
    for arch in args.archs.split(","):
        spec = ModelSpec(arch, 10, (3, size, size))
        attack = make_attack("badnets", target=0, shape=spec.input_shape)
        t0 = time.perf_counter()
        model = train_backdoored(build(arch, 10, 3), attack, x_tr, y_tr, epochs=epochs, batch_size=128, lr=1e-3,
                                 device=device)
        train_s = time.perf_counter() - t0
        path = work / f"{arch.split('.')[-1]}.safetensors"
        write_model(model.cpu(), spec, "safetensors", path, {}, x_samples[:4])
        before = evaluate(model.to(device), x_eval, y_eval, attack)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        outcome = clean(path, samples, CleanSettings(target_class=0, device=device))
        t1 = time.perf_counter()
        doc = write_clean_outputs(outcome, work / f"out-{arch}") if outcome.module is not None else {}
        write_s = time.perf_counter() - t1
        clean_s = time.perf_counter() - t0
        peak_clean = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        after = evaluate(Normalized(outcome.module, spec).to(device), x_eval, y_eval, attack) if outcome.module else {}
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        sc = scan(path, samples, device=device)
        scan_s = time.perf_counter() - t0
        peak_scan = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        rows.append({
            "arch": arch, "train_s": round(train_s, 1),
            "clean_s": round(clean_s, 2), "clean_s_excl_load": round(clean_s - outcome.timings.get("load", 0), 2),
            "clean_stages": {**{k: round(v, 2) for k, v in outcome.timings.items()}, "write outputs": round(write_s, 2)},
            "onnx_provider": next((o.get("onnx_provider") for o in doc.get("outputs", []) if o.get("format") == "onnx"), None), "peak_gpu_gib_clean": peak_clean,
            "ca_before": before["ca"], "asr_before": before["asr"], "ca_after": after.get("ca"),
            "asr_after": after.get("asr"), "verdict": outcome.removed,
            "scan_s": round(scan_s, 2), "scan_suspected": sc.detection.suspected, "scan_target": sc.detection.target,
            "peak_gpu_gib_scan": peak_scan,
        })
        print(json.dumps(rows[-1]), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
