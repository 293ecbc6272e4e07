"""Turn pipeline outcomes into the report document (plain dicts; the schema is documented in the README)."""

from __future__ import annotations

import datetime as _dt
import math
import platform

import torch

import bdscan
from bdscan.pipeline import CleanOutcome
from bdscan.triggers import png_base64

SCHEMA_VERSION = 1


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _tool() -> dict:
    return {"name": "bdscan", "version": bdscan.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def _hist(ratios: torch.Tensor, bins: int = 24) -> dict:
    """Histogram of log10 forget/retain ratios, for the report's plots."""
    logs = torch.log10(ratios.clamp(min=1e-6)).float()
    lo, hi = float(min(logs.min(), -1.0)), float(max(logs.max(), 1.5))
    counts = torch.histc(logs, bins=bins, min=lo, max=hi)
    return {"log10_min": lo, "log10_max": hi, "counts": [int(c) for c in counts]}


def clean_report(o: CleanOutcome) -> dict:
    s = o.settings
    spec = o.loaded.spec
    verdict = "no_backdoor_found" if o.removed is None else ("removed" if o.removed else "not_removed")
    doc: dict = {
        "schema_version": SCHEMA_VERSION,
        "kind": "clean",
        "created": _now(),
        "tool": _tool(),
        "verdict": verdict,
        "model": {"path": str(o.loaded.path), "sha256": o.loaded.sha256, "spec": spec.to_dict()},
        "samples": o.samples,
        "mode": o.mode,
        "target_class": o.target,
        "target_label": spec.label(o.target) if o.target is not None else None,
        "device": o.device,
        "settings": {
            "alphas": list(s.alphas), "lambdas": list(s.lambdas),
            "layers": s.layers if isinstance(s.layers, str) else list(s.layers), "rounds": s.rounds,
            "asr_bar": s.asr_bar, "max_acc_drop": s.max_acc_drop, "holdout": s.holdout, "repair": s.repair,
            "seed": s.seed, "forget": s.forget,
            "trigger_samples": str(s.trigger_samples) if s.trigger_samples else None,
        },
        "before": o.before.to_dict() if o.before else None,
        "after": o.after.to_dict() if o.after else None,
        "edit": None,
        "repair": None,
        "detection": detection_dict(o.detection) if o.detection else None,
        "trigger": _trigger(o),
        "timings": {k: round(v, 4) for k, v in o.timings.items()},
        "outputs": [],
        "warnings": _warnings(o),
    }
    if o.edit is not None and o.edit.plan is not None:
        plan = o.edit.plan
        doc["edit"] = {
            "units_per_layer": plan.units_per_layer,
            "total_units": plan.total_units,
            "rounds": o.edit.rounds,
            "ratio_histograms": {name: _hist(r) for name, r in o.edit.ratios.items()},
            "threshold_alpha": o.edit.alpha_first,
            "remap": o.edit.remap,
        }
    elif o.edit is not None:
        doc["edit"] = {"units_per_layer": {}, "total_units": 0, "rounds": o.edit.rounds,
                       "ratio_histograms": {n: _hist(r) for n, r in o.edit.ratios.items()}, "threshold_alpha": None,
                       "remap": o.edit.remap}
    if o.repair is not None:
        doc["repair"] = {"used": o.repair.used_repair, "best_epoch": o.repair.best_epoch,
                         "history": list(o.repair.history)}
    return doc


def detection_dict(d) -> dict:
    return {
        "suspected": d.suspected,
        "target_class": d.target,
        "score": round(d.score, 4),
        "threshold": d.threshold,
        "anomaly_index": {str(k): round(v, 4) for k, v in d.anomaly.items()},
        "margin_anomaly": {str(k): round(v, 4) for k, v in d.margin_anomaly.items()},
        "mask_l1": {str(k): round(v, 6) for k, v in d.mask_l1.items()},
        "warp_anomaly": {str(k): round(v, 4) for k, v in d.warp_anomaly.items()},
        "feature_anomaly": {str(k): round(v, 4) for k, v in d.feature_anomaly.items()},
        "agreement_anomaly": {str(k): round(v, 4) for k, v in d.agreement.items()},
        "activation_excess": {str(k): round(v, 4) for k, v in d.activation_excess.items()},
        # pixels; null where no warp reached the success bar
        "warp_displacement_px": {str(k): _finite(t.displacement) for k, t in d.warps.items()},
        # the blend family: each class's anomaly (scored) and smallest blend ratio (1 where no blend reached it)
        **({"blend_anomaly": {str(k): round(v, 4) for k, v in d.blend_anomaly.items()},
            "blend_ratio": {str(k): round(t.blend, 4) for k, t in d.blends.items()}} if d.blends else {}),
        "feature_shift": {str(k): round(v, 4) for k, v in d.feature_shift.items()},
        "seconds": round(d.seconds, 3),
        # nats over the median class, when a class passed the threshold; natural: those passed and not flagged
        **({"carry": {str(k): round(v, 4) for k, v in d.carry.items()},
            "natural": {str(k): round(v, 4) for k, v in d.natural.items()}} if d.carry else {}),
        **({"searches": d.searches} if d.searches else {}),
        **({"reference": _reference(d.reference)} if d.reference else {}),
    }


def _reference(ref: dict) -> dict:
    """The trusted model detection was scored against, its own per-class mask sizes and feature shifts, and the
    classes its own score flags."""
    return {**{k: v for k, v in ref.items() if k not in ("mask_l1", "feature_shift", "blind_spots")},
            "mask_l1": {str(k): round(v, 6) for k, v in ref.get("mask_l1", {}).items()},
            "feature_shift": {str(k): round(v, 4) for k, v in ref.get("feature_shift", {}).items()},
            # classes the reference itself flags: a backdoor toward them would not stand out against it
            "blind_spots": {str(k): round(v, 4) for k, v in ref.get("blind_spots", {}).items()}}


def _finite(v: float | None, digits: int = 4) -> float | None:
    return round(v, digits) if v is not None and math.isfinite(v) else None


def trigger_doc(t) -> dict:
    """What a synthesised trigger is: its family (mask, warp or both mixed), size, success and pictures."""
    doc = {"kind": t.kind, "target": t.target, "mask_l1": round(t.mask_l1, 6), "success": round(t.success, 4),
           "mask_png": png_base64(t.mask), "pattern_png": png_base64(t.pattern * (t.mask > 0.05))}
    warps = [p for p in getattr(t, "parts", (t,)) if p.kind == "warp"]
    blends = [p for p in getattr(t, "parts", (t,)) if p.kind == "blend"]
    if blends:
        doc["blend_ratio"] = round(blends[0].blend, 4)
        if t.kind == "blend":  # the pattern covers the whole image
            doc["pattern_png"] = png_base64(t.pattern)
        else:
            doc["blend_png"] = png_base64(blends[0].pattern)
    if warps:
        doc["warp_displacement_px"] = _finite(warps[0].displacement)
        if t.kind == "warp":  # the checkerboard picture is whole, not masked
            doc["pattern_png"] = png_base64(t.pattern)
        else:
            doc["warp_png"] = png_base64(warps[0].pattern)
    return doc


def _trigger(o: CleanOutcome) -> dict | None:
    """The synthesised trigger (mask, pattern) and a few images carrying the trigger, as base64 PNG."""
    if o.trigger is None and o.preview is None:
        return None
    doc: dict = {"synthesised": o.trigger is not None}
    if o.trigger is not None:
        doc.update(trigger_doc(o.trigger))
    if o.blend_search is not None:  # target given: the blend search toward it, whether or not its blend joined
        doc["blend_search"] = o.blend_search
    if o.preview is not None:
        doc["examples_png"] = [png_base64(img) for img in o.preview]
    return doc


LOW_EVIDENCE = 50  # below this many held-out triggered images a 2% bar cannot be told from 0%


def _warnings(o: CleanOutcome) -> list[str]:
    out = []
    if o.after is not None and o.after.asr is not None and o.after.n_forget < LOW_EVIDENCE:
        out.append(f"only {o.after.n_forget} held-out triggered images measured the attack success rate; give "
                   f"more trigger samples (at least {LOW_EVIDENCE // 0.3:.0f}) for a verdict that a 2% bar can trust")
    if o.removed and o.mode in ("target", "detected"):
        # benchmarks/logs/clean-checks.txt: the check passed lab models whose real trigger still worked
        out.append("the verdict measures synthesised triggers (masks, and a warp or blend where one was found), and it "
                   "has passed lab models the real trigger still worked on: 2.7% attack success left on a Trojan, 11.5% "
                   "to 20% on input-aware backdoors, whose trigger differs per image: confirm with real trigger "
                   "images (--trigger-samples) where you have them")
    return out
