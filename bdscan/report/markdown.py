"""report.md: sized for a GitHub job summary (verdict, a small table of key numbers, what changed, time)."""

from __future__ import annotations


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


VERDICT_LINE = {
    "removed": "✅ **Backdoor removed**",
    "not_removed": "❌ **Backdoor NOT removed**",
    "no_backdoor_found": "✅ **No backdoor found**: nothing was changed",
    "suspected": "❌ **Backdoor suspected**",
    "accepted": "⚠️ **Backdoor suspected, accepted by review**",
    "clean": "✅ **No backdoor found**",
}
MODES = {
    "bdk": "images carrying the real trigger",
    "target": "given target class, synthesised trigger",
    "detected": "scan found the target, synthesised trigger",
    "class": "unlearn the target class, then repair",
}


def code(v) -> str:
    """A value as inline code that cannot break a table row."""
    return "`" + str(v).replace("`", "'").replace("|", "\\|") + "`"


def samples_parts(s) -> tuple[str, str]:
    """A report's samples entry (a folder path, or a dict with the path and the split) as (path, detail)."""
    if isinstance(s, int):  # scan reports count the images
        return f"{s} images", ""
    if not isinstance(s, dict):
        return str(s), ""
    parts = [f"{s['images']} images"] if "images" in s else []
    if "held_in" in s and "held_out" in s:
        parts.append(f"{s['held_in']} used to edit and repair, {s['held_out']} held out to measure")
    if isinstance(s.get("classes"), list):
        parts.append(f"{len(s['classes'])} classes")
    return str(s.get("path")), "; ".join(parts)


def samples_text(s) -> str:
    path, detail = samples_parts(s)
    return f"{path} ({detail})" if detail else path


def render_markdown(doc: dict) -> str:
    if doc.get("kind") == "scan":
        return _scan_md(doc)
    return _clean_md(doc)


def _secs(t: dict) -> str:
    return f"{sum(t.values()):.1f} s"


def _clean_md(doc: dict) -> str:
    from bdscan.report.scan import detection_notes

    m = doc.get("model") or {}
    verdict = VERDICT_LINE.get(doc.get("verdict"), str(doc.get("verdict")))
    lines = [f"## bdscan clean: {code(m.get('path'))}", "", verdict, ""]
    b, a = doc.get("before"), doc.get("after")
    if b and a:
        lines += [
            "| | before | after |",
            "|---|---:|---:|",
            f"| attack success rate (n={a.get('n_forget')} triggered images) | {pct(b.get('attack_success_rate'))} | "
            f"**{pct(a.get('attack_success_rate'))}** |",
            f"| clean accuracy (n={a.get('n_clean')} held-out images) | {pct(b.get('accuracy'))} | "
            f"{pct(a.get('accuracy'))} |",
            "",
        ]
    facts = []
    if doc.get("target_class") is not None:
        facts.append(f"Target class: **{doc['target_class']}** ({doc.get('target_label')}); "
                     f"{MODES.get(doc.get('mode'), doc.get('mode'))}")
    d = doc.get("detection")
    if d and doc.get("verdict") == "no_backdoor_found" and "score" in d:
        facts.append(f"Anomaly score {d['score']:.2f} ≤ threshold {d['threshold']:g}")
    facts += [f"{kind.capitalize()}: {note}" for kind, note in detection_notes(d)]
    e = doc.get("edit")
    if e:
        layers = ", ".join(f"{code(k)} {v}" for k, v in (e.get("units_per_layer") or {}).items() if v)
        alpha = e.get("threshold_alpha")
        facts.append(f"Units edited: **{e.get('total_units', 0)}**" + (f" ({layers})" if layers else "")
                     + (f", threshold α={alpha:g}" if alpha else ""))
    chosen = ((e or {}).get("remap") or {}).get("chosen")
    if chosen:
        facts.append(f"Layer remap: {code(chosen['layer'])} (ridge {chosen['ridge']:g})")
    r = doc.get("repair")
    if r:
        facts.append("Repair: " + (f"kept epoch {r.get('best_epoch')} ({len(r.get('history') or []) - 1} run)"
                                   if r.get("used") else "the edit alone was kept"))
    if doc.get("samples"):
        path, detail = samples_parts(doc["samples"])
        facts.append(f"Samples: {code(path)}" + (f" ({detail})" if detail else ""))
    t = doc.get("timings") or {}
    if t:
        facts.append(f"Time: **{_secs(t)}** (" + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()) + ")")
    lines += [f"- {f}" for f in facts] + ([""] if facts else [])
    rows = [f"| {code(m.get('path'))} | input | {code(m.get('sha256'))} |"]
    rows += [f"| {code(o.get('path'))} | {o.get('format')} | {code(o.get('sha256'))} |"
             for o in doc.get("outputs") or []]
    lines += ["| file | role | sha256 |", "|---|---|---|", *rows, ""]
    if doc.get("report_digest"):
        lines += [f"Report digest {code(doc['report_digest'])}; charts and the trigger are in report.html.", ""]
    return "\n".join(lines)


def _scan_md(doc: dict) -> str:
    from bdscan.report.scan import accepted_reason, failing, model_notes, verdict as model_verdict

    s = doc.get("summary") or {}
    verdict = VERDICT_LINE["suspected" if failing(doc) else "accepted" if s.get("suspected") else "clean"]
    accepted = f" ({s['accepted']} accepted)" if s.get("accepted") else ""
    lines = [
        "## bdscan scan",
        "",
        f"{verdict}: {s.get('scanned', 0)} model(s) scanned, **{s.get('suspected', 0)} suspected**{accepted}, "
        f"{s.get('clean', 0)} clean, {s.get('errors', 0)} error(s), {s.get('skipped', 0)} skipped.",
        "",
    ]
    models = doc.get("models") or []
    if models:
        lines += ["| model | verdict | target | score / threshold | time |", "|---|---|---|---:|---:|"]
        for m in models:
            v = {"suspected": "❌ suspected", "clean": "✅ clean",
                 "accepted": f"⚠️ accepted: {code(accepted_reason(m))}"}[model_verdict(m)]
            tgt = "" if m.get("target_class") is None else f"{m['target_class']} ({m.get('target_label')})"
            lines.append(f"| {code(m.get('path'))} | {v} | {tgt} | {m.get('score', 0):.2f} / "
                         f"{m.get('threshold', 0):g} | {m.get('seconds', 0):.1f} s |")
        lines.append("")
    notes = [(m, n) for m in models for _, n in model_notes(m)]
    lines += [f"- {code(m.get('path'))}: {n}" for m, n in notes] + ([""] if notes else [])
    for e in doc.get("errors") or []:
        lines.append(f"- ⚠️ {code(e.get('path'))}: {e.get('error')}")
    for e in doc.get("skipped") or []:
        lines.append(f"- skipped {code(e.get('path'))}: {e.get('reason')}")
    return "\n".join(lines) + "\n"
