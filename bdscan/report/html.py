"""report.html: one self-contained page (no network; images inlined)."""

from __future__ import annotations

import html

from bdscan.report.markdown import pct

CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
.verdict{font-size:1.6em;font-weight:700;padding:.5em .8em;border-radius:6px}
.ok{background:#e6f4ea;color:#1e6b34}.bad{background:#fde7e9;color:#a1121f}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}code{background:#f4f4f4;padding:0 .2em}"""

GOOD = {"removed", "no_backdoor_found", "clean"}


def _verdict_text(doc: dict) -> str:
    if doc.get("kind") == "scan":
        s = doc["summary"]
        return f"{s['suspected']} of {s['scanned']} model(s) suspected" if s["suspected"] else "No backdoor found"
    return {"removed": "Backdoor removed", "not_removed": "Backdoor NOT removed",
            "no_backdoor_found": "No backdoor found"}.get(doc["verdict"], doc["verdict"])


def render_html(doc: dict) -> str:
    from bdscan.report.markdown import render_markdown

    verdict = doc.get("verdict") or ("suspected" if doc.get("summary", {}).get("suspected") else "clean")
    cls = "ok" if verdict in GOOD else "bad"
    body = [f'<div class="verdict {cls}" id="verdict">{html.escape(_verdict_text(doc))}</div>']
    b, a = doc.get("before"), doc.get("after")
    if b and a:
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{pct(b['per_class_accuracy'].get(k))}</td>"
            f"<td>{pct(a['per_class_accuracy'].get(k))}</td></tr>" for k in a["per_class_accuracy"]
        )
        body.append(
            "<h2>Accuracy and attack success</h2><table><tr><th>measure</th><th>before</th><th>after</th></tr>"
            f"<tr><td>clean accuracy</td><td>{pct(b['accuracy'])}</td><td>{pct(a['accuracy'])}</td></tr>"
            f"<tr><td>attack success rate</td><td>{pct(b['attack_success_rate'])}</td>"
            f"<td>{pct(a['attack_success_rate'])}</td></tr></table>"
            f"<h3>Per-class accuracy</h3><table><tr><th>class</th><th>before</th><th>after</th></tr>{rows}</table>"
        )
    body.append("<h2>Details</h2><pre>" + html.escape(render_markdown(doc)) + "</pre>")
    title = html.escape(f"bdscan {doc.get('kind', '')} report")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title><style>{CSS}</style>"
            f"</head><body><h1>{title}</h1>{''.join(body)}</body></html>\n")
