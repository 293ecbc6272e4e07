"""SARIF 2.1.0 for GitHub code scanning: one result per suspected model (and per model that failed)."""

from __future__ import annotations

from bdscan.report.scan import accepted_reason

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULES = [
    {
        "id": "BDSCAN001",
        "name": "BackdoorSuspected",
        "shortDescription": {"text": "Image classifier shows signs of a backdoor"},
        "fullDescription": {"text": "Trigger inversion found an unusually small input perturbation that sends "
                                    "images of every other class to one target class."},
        "help": {"text": "Run `bdscan clean MODEL --samples DIR` to remove the backdoor, or do not ship the model."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "machine-learning", "backdoor"]},
    },
    {
        "id": "BDSCAN002",
        "name": "ModelNotScanned",
        "shortDescription": {"text": "Model file could not be scanned"},
        "fullDescription": {"text": "bdscan could not read or analyse this model file; it was not checked."},
        "help": {"text": "Fix the file or its metadata; see the error message."},
        "defaultConfiguration": {"level": "warning"},
    },
]


def _location(path: str) -> list[dict]:
    return [{"physicalLocation": {"artifactLocation": {"uri": path.lstrip("./") if path.startswith("./") else path}}}]


def _reference(m: dict) -> dict:
    """The trusted model a finding was scored against (--reference), where there was one."""
    ref = (m.get("evidence") or {}).get("reference")
    if not ref:
        return {}
    return {"reference": {"path": ref.get("path"), "sha256": ref.get("sha256"),
                          "blindSpots": sorted(int(k) for k in ref.get("blind_spots") or {})}}


def _natural(m: dict) -> dict:
    """Classes over the threshold left unflagged as natural routes (the carry rule), with their carry in nats."""
    ev = m.get("evidence") or {}
    natural = ev.get("natural") or {}
    if not natural:
        return {}
    carry = ev.get("carry") or {}
    return {"naturalClasses": [{"class": int(k), "score": v, "carry": carry.get(k)}
                               for k, v in sorted(natural.items(), key=lambda kv: int(kv[0]))]}


def render_sarif(doc: dict) -> dict:
    results = []
    for m in doc.get("models", []):
        if not m["suspected"]:
            continue
        results.append({
            "ruleId": "BDSCAN001",
            "ruleIndex": 0,
            "level": "error",
            "message": {"text": f"Backdoor suspected toward class {m['target_class']} ({m.get('target_label')}); "
                                f"anomaly score {m['score']:.2f} > {m['threshold']:.2f}."},
            "locations": _location(m["path"]),
            "partialFingerprints": {"modelSha256": m["sha256"]},
            "properties": {"targetClass": m["target_class"], "score": m["score"], **_reference(m), **_natural(m)},
            # a reviewed finding (--accepted): still reported, with a SARIF suppression for tools that honour them
            **({"suppressions": [{"kind": "external", "status": "accepted",
                                  "justification": accepted_reason(m)}]}
               if m.get("accepted") else {}),
        })
    for e in doc.get("errors", []):
        results.append({
            "ruleId": "BDSCAN002",
            "ruleIndex": 1,
            "level": "warning",
            "message": {"text": e["error"]},
            "locations": _location(e["path"]),
        })
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "bdscan", "version": doc["tool"]["version"],
                                "rules": RULES}},
            "results": results,
        }],
    }
