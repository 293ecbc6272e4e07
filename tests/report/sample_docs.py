"""Report documents in the shapes clean_report() and scan_report() produce, built without running a model."""

from __future__ import annotations

import base64
import io

import numpy as np

LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def png_b64(seed: int, size: int = 28) -> str:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, size=(size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _hist(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    counts = np.histogram(rng.normal(0, 0.4, 64), bins=24, range=(-1.0, 1.5))[0].tolist()
    counts[-3:] = [1, 2, 1]
    return {"log10_min": -1.0, "log10_max": 1.5, "counts": counts}


def make_clean_doc(verdict: str = "removed") -> dict:
    per_before = {str(k): 0.9 - 0.02 * k for k in range(10)}
    per_after = {str(k): 0.88 - 0.02 * k for k in range(10)}
    return {
        "schema_version": 1, "kind": "clean", "created": "2026-01-01T00:00:00+00:00",
        "tool": {"name": "bdscan", "version": "0.1.0", "torch": "2.x", "python": "3.11"},
        "verdict": verdict,
        "model": {"path": "examples/models/badnets-cnn.safetensors", "sha256": "ab" * 32,
                  "spec": {"architecture": "bdscan.small_cnn", "num_classes": 10, "input_shape": [1, 28, 28],
                           "mean": None, "std": None, "labels": list(LABELS), "format": "safetensors"}},
        "samples": "examples/samples", "mode": "target", "target_class": 0, "target_label": LABELS[0],
        "device": "cpu",
        "settings": {"alphas": [10, 5, 2], "lambdas": [1, 0], "layers": "late", "rounds": 3, "asr_bar": 0.1,
                     "max_acc_drop": 0.05, "holdout": 0.3, "repair": True, "seed": 0, "forget": "trigger",
                     "trigger_samples": None},
        "before": {"accuracy": 0.86, "per_class_accuracy": per_before, "attack_success_rate": 0.98, "n_clean": 30,
                   "n_forget": 27},
        "after": {"accuracy": 0.83 if verdict == "removed" else 0.85, "per_class_accuracy": per_after,
                  "attack_success_rate": 0.04 if verdict == "removed" else 0.7, "n_clean": 30, "n_forget": 27},
        "edit": {"units_per_layer": {"features.3": 5, "classifier.1": 12}, "total_units": 17,
                 "rounds": [{"round": 1, "alpha": 5.0, "lambda": 0.0, "units": 17, "fidelity": 0.8,
                             "held_in_asr": 0.05}],
                 "ratio_histograms": {"features.3": _hist(1), "classifier.1": _hist(2)}, "threshold_alpha": 5.0},
        "repair": {"used": True, "best_epoch": 2, "history": [
            {"epoch": 0, "accuracy": 0.8, "asr": 0.05}, {"epoch": 1, "accuracy": 0.82, "asr": 0.04},
            {"epoch": 2, "accuracy": 0.83, "asr": 0.04}]},
        "detection": None,
        "trigger": {"synthesised": True, "target": 0, "mask_l1": 0.02, "success": 0.99, "mask_png": png_b64(1),
                    "pattern_png": png_b64(2), "examples_png": [png_b64(3), png_b64(4), png_b64(5)]},
        "timings": {"load": 0.5, "synthesise trigger": 3.2, "edit": 1.1, "repair": 2.0, "export": 0.7},
        "outputs": [{"path": "out/badnets-cnn.safetensors", "format": "safetensors", "sha256": "cd" * 32,
                     "onnx_max_abs_diff": None},
                    {"path": "out/badnets-cnn.onnx", "format": "onnx", "sha256": "ef" * 32,
                     "onnx_max_abs_diff": 2.4e-7}] if verdict == "removed" else [],
        "report_digest": "12" * 32,
    }


def make_bare_clean_doc() -> dict:
    """No backdoor found: nothing was edited, repaired, evaluated after or written."""
    doc = make_clean_doc("no_backdoor_found")
    doc.update(target_class=None, target_label=None, mode="detected", after=None, edit=None, repair=None,
               trigger=None, outputs=[], timings={"load": 0.4, "scan": 5.0})
    doc["detection"] = {"suspected": False, "target_class": None, "score": 1.2, "threshold": 2.0,
                        "anomaly_index": {str(k): 0.1 * k for k in range(10)},
                        "margin_anomaly": {str(k): 0.0 for k in range(10)},
                        "mask_l1": {str(k): 0.05 for k in range(10)}, "seconds": 5.0}
    return doc


def _model(path: str, suspected: bool) -> dict:
    ev = {"suspected": suspected, "target_class": 0 if suspected else None, "score": 3.4 if suspected else 0.9,
          "threshold": 2.0, "anomaly_index": {str(k): (3.4 if suspected and k == 0 else 0.2 * k) for k in range(10)},
          "margin_anomaly": {str(k): 0.0 for k in range(10)}, "mask_l1": {str(k): 0.05 for k in range(10)},
          "activation_excess": {str(k): (0.043 if suspected and k == 0 else 0.002) for k in range(10)},
          "seconds": 4.0}
    return {"path": path, "sha256": "ab" * 32, "format": "safetensors", "architecture": "bdscan.small_cnn",
            "suspected": suspected, "target_class": ev["target_class"],
            "target_label": LABELS[0] if suspected else None,
            "score": ev["score"], "threshold": 2.0, "evidence": ev, "samples": 100, "seconds": 4.2,
            "timings": {"load": 0.2, "scan": 4.0}, "trigger_files": {}, "labels": list(LABELS),
            "trigger": {"mask_l1": 0.02, "success": 0.99, "mask_png": png_b64(6), "pattern_png": png_b64(7)}
            if suspected else None}


def make_scan_doc() -> dict:
    models = [_model("examples/models/badnets-cnn.safetensors", True),
              _model("examples/models/clean-cnn.safetensors", False)]
    return {"schema_version": 1, "kind": "scan", "created": "2026-01-01T00:00:00+00:00",
            "tool": {"name": "bdscan", "version": "0.1.0", "torch": "2.x", "python": "3.11"},
            "summary": {"scanned": 2, "suspected": 1, "clean": 1, "errors": 1, "skipped": 1}, "models": models,
            "errors": [{"path": "broken.onnx", "error": "cannot parse broken.onnx", "exit_code": 2}],
            "skipped": [{"path": "weights.pt", "reason": "pickle files are not loaded"}]}
