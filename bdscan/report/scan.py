"""The scan report document: summary, models[], errors[], skipped[]."""

from __future__ import annotations

from bdscan.report.build import SCHEMA_VERSION, _now, _tool, detection_dict, trigger_doc


def model_entry(outcome, trigger_files: dict | None = None) -> dict:
    d = outcome.detection
    spec = outcome.loaded.spec
    return {
        "path": str(outcome.loaded.path),
        "sha256": outcome.loaded.sha256,
        "format": spec.format,
        "architecture": spec.architecture,
        "suspected": d.suspected,
        "target_class": d.target,
        "target_label": spec.label(d.target) if d.target is not None else None,
        "score": round(d.score, 4),
        "threshold": d.threshold,
        "evidence": detection_dict(d),
        "samples": outcome.samples,
        "seconds": round(sum(outcome.timings.values()), 3),
        "timings": {k: round(v, 4) for k, v in outcome.timings.items()},
        "trigger_files": trigger_files or {},
        "labels": list(spec.labels) if spec.labels else None,
        "trigger": _trigger(d),
        "accepted": None,  # {"reason": ...} when a reviewed finding (bdscan.accepted)
    }


def _trigger(d) -> dict | None:
    """The suspected target's synthesised trigger (the family that scored) as base64 PNG, for report.html."""
    if not d.suspected or d.target not in d.triggers:
        return None
    return trigger_doc(d.shown_trigger(d.target))


def verdict(m: dict) -> str:
    """One model's verdict: "suspected", "accepted" (suspected, but a reviewed finding: the gate passes) or "clean"."""
    if not m.get("suspected"):
        return "clean"
    return "accepted" if m.get("accepted") else "suspected"


def accepted_reason(m: dict) -> str:
    """Why an accepted finding was accepted, as its file gives it ("reviewed" where it gives none)."""
    return (m.get("accepted") or {}).get("reason") or "reviewed"


def search_note(m: dict) -> str | None:
    """For a model not suspected although some of its trigger searches (``--searches``) flagged a class: which
    class, by how many; None otherwise."""
    runs = (m.get("evidence") or {}).get("searches") or []
    flagged = [r for r in runs if r.get("suspected")]
    if m.get("suspected") or not flagged:
        return None
    classes = ", ".join(str(c) for c in sorted({r["target_class"] for r in flagged}))
    return (f"{len(flagged)} of {len(runs)} trigger searches flagged class {classes}; a verdict needs all "
            f"{len(runs)}")


def reference_note(m: dict) -> str | None:
    """For a model scored against a trusted reference (``--reference``): which one; None otherwise."""
    ref = (m.get("evidence") or {}).get("reference")
    if not ref:
        return None
    note = (f"scored against the reference model {ref.get('path')} (sha256 {str(ref.get('sha256', ''))[:16]}…): "
            "each class's mask size and feature shift over the reference's own")
    blind = ref.get("blind_spots") or {}
    if blind:
        listed = ", ".join(f"{k} ({v:.2f})" for k, v in sorted(blind.items(), key=lambda kv: int(kv[0])))
        many = len(blind) > 1
        note += (f"; the reference's own search flags class{'es' if many else ''} {listed}, so a backdoor toward "
                 f"{'them' if many else 'it'} would not stand out: check the reference")
    return note


def natural_note(m: dict) -> str | None:
    """For classes over the threshold left unflagged because their triggers carry to models trained on the samples
    alone: which, by how much; None otherwise."""
    ev = m.get("evidence") or {}
    natural, carried = ev.get("natural") or {}, ev.get("carry") or {}
    if not natural:
        return None
    listed = ", ".join(f"{k} ({v:.2f}; +{carried.get(k, 0):.1f} nats)"
                       for k, v in sorted(natural.items(), key=lambda kv: int(kv[0])))
    carries = "their triggers carry" if len(natural) > 1 else "its trigger carries"
    return (f"not flagged: class{'es' if len(natural) > 1 else ''} {listed} over the threshold, but {carries} to "
            "models trained on the samples alone (a natural route to the class, not a shortcut only this model "
            "learned)")


def model_notes(m: dict) -> list[tuple[str, str]]:
    """The notes a report shows under a model, as (kind, text): natural routes, trigger searches, reference."""
    notes = [("natural", natural_note(m)), ("searches", search_note(m)), ("reference", reference_note(m))]
    return [(kind, text) for kind, text in notes if text]


def detection_notes(detection: dict | None) -> list[tuple[str, str]]:
    """model_notes for clean's report, whose `detection` is a scan entry's evidence."""
    d = detection or {}
    return model_notes({"evidence": d, "suspected": d.get("suspected")})


def failing(doc: dict) -> int:
    """How many models the gate fails on: suspected and not accepted."""
    s = doc.get("summary") or {}
    return int(s.get("suspected", 0)) - int(s.get("accepted", 0))


def scan_report(models: list[dict], errors: list[dict], skipped: list[dict]) -> dict:
    suspected = sum(m["suspected"] for m in models)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "scan",
        "created": _now(),
        "tool": _tool(),
        "summary": {
            "scanned": len(models), "suspected": suspected, "clean": len(models) - suspected,
            "accepted": sum(verdict(m) == "accepted" for m in models),
            "errors": len(errors), "skipped": len(skipped),
        },
        "models": models,
        "errors": errors,
        "skipped": skipped,
    }
