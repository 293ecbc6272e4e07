"""report.md: sized for a GitHub job summary."""

from __future__ import annotations


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


VERDICT_LINE = {
    "removed": "✅ **Backdoor removed**",
    "not_removed": "❌ **Backdoor NOT removed**",
    "no_backdoor_found": "✅ **No backdoor found**: nothing was changed",
    "suspected": "❌ **Backdoor suspected**",
    "clean": "✅ **No backdoor found**",
}


def render_markdown(doc: dict) -> str:
    if doc.get("kind") == "scan":
        return _scan_md(doc)
    return _clean_md(doc)


def _clean_md(doc: dict) -> str:
    lines = [f"## bdscan clean: `{doc['model']['path']}`", "", VERDICT_LINE.get(doc["verdict"], doc["verdict"]), ""]
    if doc.get("target_class") is not None:
        lines.append(f"Target class **{doc['target_class']}** ({doc.get('target_label')}), found by: {doc['mode']}.")
        lines.append("")
    b, a = doc.get("before"), doc.get("after")
    if b and a:
        lines += [
            "| measure | before | after |",
            "|---|---:|---:|",
            f"| clean accuracy (held-out samples, n={a['n_clean']}) | {pct(b['accuracy'])} | {pct(a['accuracy'])} |",
            f"| attack success rate (forget set, n={a['n_forget']}) | {pct(b['attack_success_rate'])} | "
            f"{pct(a['attack_success_rate'])} |",
            "",
        ]
    e = doc.get("edit")
    if e:
        lines.append(f"Edited **{e['total_units']}** units"
                     + (": " + ", ".join(f"`{k}` {v}" for k, v in e["units_per_layer"].items() if v) if e["total_units"] else ".")
                     )
        lines.append("")
    r = doc.get("repair")
    if r:
        lines.append(f"Repair: {'kept epoch ' + str(r['best_epoch']) if r['used'] else 'the edit alone was kept'}.")
        lines.append("")
    t = doc.get("timings") or {}
    if t:
        lines.append("Time: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()) + f" (total {sum(t.values()):.2f}s)")
        lines.append("")
    outs = doc.get("outputs") or []
    if outs:
        lines += ["| output | sha256 |", "|---|---|"]
        lines += [f"| `{o['path']}` | `{o['sha256'][:16]}…` |" for o in outs]
        lines.append("")
    return "\n".join(lines)


def _scan_md(doc: dict) -> str:
    s = doc["summary"]
    lines = [
        "## bdscan scan",
        "",
        f"{s['scanned']} model(s) scanned: **{s['suspected']} suspected**, {s['clean']} clean, "
        f"{s['errors']} error(s), {s['skipped']} skipped.",
        "",
    ]
    if doc["models"]:
        lines += ["| model | verdict | target | score | time |", "|---|---|---:|---:|---:|"]
        for m in doc["models"]:
            v = "❌ suspected" if m["suspected"] else "✅ clean"
            tgt = "" if m["target_class"] is None else f"{m['target_class']} ({m.get('target_label')})"
            lines.append(f"| `{m['path']}` | {v} | {tgt} | {m['score']:.2f} | {m['seconds']:.1f}s |")
        lines.append("")
    for e in doc.get("errors", []):
        lines.append(f"- ⚠️ `{e['path']}`: {e['error']}")
    for e in doc.get("skipped", []):
        lines.append(f"- skipped `{e['path']}`: {e['reason']}")
    return "\n".join(lines) + "\n"
