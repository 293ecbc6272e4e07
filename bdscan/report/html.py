"""report.html: one self-contained page (inline CSS and SVG charts, images as data: URIs, no script, no network)."""

from __future__ import annotations

import html
import re

from bdscan.report import plots
from bdscan.report.markdown import pct, samples_text
from bdscan.report.scan import accepted_reason, detection_notes, failing, model_notes, verdict

CSS = """:root{--ok:#1a7f37;--okbg:#dafbe1;--bad:#cf222e;--badbg:#ffebe9;--muted:#57606a;--line:#d0d7de}
*{box-sizing:border-box}body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1000px;
margin:0 auto;padding:1.5em;color:#1f2328}h1{font-size:1.4em;margin:0}h2{font-size:1.15em;margin:1.8em 0 .4em;
border-bottom:1px solid var(--line);padding-bottom:.2em}h3{font-size:1em;margin:1.2em 0 .3em}
.sub{color:var(--muted);margin:.2em 0 1em;word-break:break-all}
.verdict{border-radius:8px;padding:.8em 1.1em;margin:1em 0;border:1px solid}
.verdict .title{font-size:1.6em;font-weight:700}.verdict p{margin:.3em 0 0}
.ok{background:var(--okbg);color:var(--ok);border-color:var(--ok)}
.bad{background:var(--badbg);color:var(--bad);border-color:var(--bad)}
.neutral{background:#f6f8fa;color:#1f2328;border-color:var(--line)}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.5em 0}
.card{flex:1 1 150px;border:1px solid var(--line);border-radius:6px;padding:.5em .8em}
.card .k{color:var(--muted);font-size:.85em}.card .v{font-size:1.15em;font-weight:600}
figure{margin:.8em 0}figure.chart svg{max-width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:.85em}
.imgs{display:flex;flex-wrap:wrap;gap:1em}.imgs figure{margin:0;text-align:center}
.imgs img{width:112px;height:auto;image-rendering:pixelated;border:1px solid var(--line);background:#fff}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid var(--line);padding:.25em .6em;
text-align:left;vertical-align:top}table.num td+td{text-align:right}th{background:#f6f8fa}
code{font-family:ui-monospace,monospace;font-size:.88em;overflow-wrap:anywhere}
code.sha{color:var(--muted);font-size:.8em;white-space:nowrap}
footer{margin-top:2em;color:var(--muted);font-size:.85em}"""

MODES = {
    "bdk": "images carrying the real trigger were given (--trigger-samples)",
    "target": "the target class was given and a trigger toward it was synthesised",
    "detected": "the scan found the target class and synthesised its trigger",
    "class": "the target class is unlearned, then repaired (no trigger)",
}
_B64 = re.compile(r"^[A-Za-z0-9+/=]+$")
e = html.escape


def _img(b64: str | None, caption: str) -> str:
    if not b64 or not _B64.match(b64):  # a saved report is input: never let it break out of the attribute
        return ""
    return (f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _chart(svg: str, name: str, caption: str) -> str:
    return f'<figure class="chart" id="{name}" data-chart="{name}">{svg}<figcaption>{e(caption)}</figcaption></figure>'


def _cards(items: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{e(k)}</div><div class="v">{e(v)}</div></div>' for k, v in items) + "</div>"


def _table(head: list[str] | None, rows: list[list[str]], num: bool = False) -> str:
    """Cells are already-escaped HTML; ``num`` right-aligns all but the first column."""
    th = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    cls = ' class="num"' if num else ""
    return f"<table{cls}>{th}{body}</table>"


def _arrow(b, a) -> str:
    return f"{pct(b)} → {pct(a)}"


def _secs(t: dict) -> str:
    return f"{sum(t.values()):.1f} s" if t else "n/a"


def _labels(doc: dict) -> list[str] | None:
    return ((doc.get("model") or {}).get("spec") or {}).get("labels")


def _target(doc: dict) -> str:
    t = doc.get("target_class")
    return "none" if t is None else f"{t} ({doc.get('target_label')})"


# ---------- clean ----------

def _clean_verdict(doc: dict) -> tuple[str, str, str]:
    v, b, a = doc.get("verdict"), doc.get("before") or {}, doc.get("after") or {}
    edit = doc.get("edit") or {}
    if v == "removed":
        return "ok", "Backdoor removed", (
            f"The trigger toward class {_target(doc)} now works on {pct(a.get('attack_success_rate'))} of "
            f"triggered images (was {pct(b.get('attack_success_rate'))}); clean accuracy "
            f"{_arrow(b.get('accuracy'), a.get('accuracy'))}; {edit.get('total_units', 0)} units dampened.")
    if v == "not_removed":
        return "bad", "Backdoor NOT removed", (
            f"The trigger toward class {_target(doc)} still works on {pct(a.get('attack_success_rate'))} of "
            f"triggered images (was {pct(b.get('attack_success_rate'))}). No cleaned model was written.")
    if v == "no_backdoor_found":
        d = doc.get("detection") or {}
        extra = f" (anomaly score {d['score']:.2f} ≤ threshold {d['threshold']:g})" if "score" in d else ""
        return "ok", "No backdoor found", f"No class has an unusually small trigger{extra}; the model was not changed."
    return "neutral", str(v), ""


def _clean_body(doc: dict) -> list[str]:
    b, a, edit = doc.get("before"), doc.get("after"), doc.get("edit")
    cards = [("target class", _target(doc))]
    if b and a:
        cards += [("attack success rate", _arrow(b.get("attack_success_rate"), a.get("attack_success_rate"))),
                  ("clean accuracy", _arrow(b.get("accuracy"), a.get("accuracy")))]
    if edit:
        layers = sum(1 for v in (edit.get("units_per_layer") or {}).values() if v)
        cards.append(("units edited", f"{edit.get('total_units', 0)} in {layers} layers"))
    cards.append(("total time", _secs(doc.get("timings") or {})))
    out = [_cards(cards)]
    if doc.get("mode") and doc.get("target_class") is not None:
        out.append(f"<p>How the backdoor was found: {e(MODES.get(doc['mode'], doc['mode']))}.</p>")
    out += _accuracy_section(doc) + _edit_section(edit) + _repair_section(doc.get("repair"))
    out += _trigger_section(doc.get("trigger"))
    d = doc.get("detection")
    if d and d.get("anomaly_index"):
        out.append("<h2>Detection</h2>")
        out.append(_anomaly(d, d.get("threshold") or 0, d.get("target_class"), _labels(doc), d.get("score"),
                            "chart-anomaly"))
        out += [f'<p id="{kind}">{e(note)}.</p>' for kind, note in detection_notes(d)]
    if doc.get("timings"):
        out.append("<h2>Time</h2>")
        out.append(_chart(plots.timings(doc["timings"]), "chart-timings", f"Total {_secs(doc['timings'])}."))
    return out + _clean_provenance(doc)


def _accuracy_section(doc: dict) -> list[str]:
    b, a = doc.get("before"), doc.get("after")
    if not (b and a):
        return []
    out = ["<h2>Accuracy and attack success</h2>", _chart(
        plots.asr_and_accuracy(b, a, (doc.get("settings") or {}).get("asr_bar")), "chart-asr",
        f"Attack success rate: the share of triggered images of other classes classified as the target "
        f"(n={a.get('n_forget')}); below the dashed line the backdoor counts as removed. Clean accuracy on "
        f"held-out samples (n={a.get('n_clean')}).")]
    pcb, pca = b.get("per_class_accuracy") or {}, a.get("per_class_accuracy") or {}
    if pca or pcb:
        out.append(_chart(plots.per_class_accuracy(pcb, pca, _labels(doc)), "chart-per-class",
                          "Accuracy per class on the held-out clean samples, before and after cleaning."))
    return out


def _edit_section(edit: dict | None) -> list[str]:
    if not edit:
        return []
    out = ["<h2>What was edited</h2>"]
    hists, units = edit.get("ratio_histograms") or {}, edit.get("units_per_layer") or {}
    if hists:
        out.append(_chart(plots.ratio_histograms(hists, edit.get("threshold_alpha"), units), "chart-ratios",
                          "Per unit: mean activation on triggered images over mean activation on clean images. "
                          "Units right of the dashed threshold α were dampened."))
    if units:
        out.append(_chart(plots.units_per_layer(units), "chart-units", "Units dampened in each layer."))
    rounds = edit.get("rounds") or []
    if rounds:
        out.append(_table(["round", "α", "λ", "units", "agreement with original", "held-in attack success"], [
            [str(r.get("round")), f"{r.get('alpha'):g}", f"{r.get('lambda'):g}", str(r.get("units")),
             pct(r.get("fidelity")), pct(r.get("held_in_asr"))] for r in rounds], num=True))
    remap = edit.get("remap") or {}
    chosen = remap.get("chosen")
    if chosen:
        out.append(f"<p>Layer remap: <code>{e(str(chosen.get('layer')))}</code> rewritten in closed form (ridge "
                   f"{chosen.get('ridge'):g}, weights changed by {100 * chosen.get('relative_change', 0):.0f}% of "
                   f"their norm); agreement with the original on augmented clean images "
                   f"{pct(chosen.get('fidelity'))}, held-out attack success {pct(chosen.get('val_asr'))}.</p>")
    elif remap:
        out.append("<p>Layer remap: no candidate beat the unit edit alone; none applied.</p>")
    return out


def _repair_section(rep: dict | None) -> list[str]:
    if not (rep and rep.get("history")):
        return []
    kept = f"epoch {rep.get('best_epoch')} was kept" if rep.get("used") else "the edit alone was kept"
    return ["<h2>Repair</h2>", _chart(plots.repair_history(rep["history"], rep.get("best_epoch") if rep.get("used")
                                                            else 0), "chart-repair",
                                      f"A short fine-tune on the clean samples; {kept}.")]


def _trigger_imgs(t: dict) -> list[str]:
    if t.get("kind") == "warp":
        return [_img(t.get("mask_png"), "where pixels move"), _img(t.get("pattern_png"), "warp, exaggerated")]
    if t.get("kind") == "blend":
        return [_img(t.get("pattern_png"), "blended pattern")]
    out = [_img(t.get("mask_png"), "mask"), _img(t.get("pattern_png"), "pattern")]
    if t.get("blend_png"):
        out.append(_img(t.get("blend_png"), "blended pattern"))
    if t.get("warp_png"):
        out.append(_img(t.get("warp_png"), "warp, exaggerated"))
    return out


def _trigger_caption(t: dict) -> str:
    warp = (f"the smallest smooth warp that sends other classes to the target moves pixels by "
            f"{t.get('warp_displacement_px')} px on average")
    blend = (f"the weakest blend of a whole-image pattern that sends other classes to the target mixes in "
             f"{pct(t.get('blend_ratio'))} of it")
    if t.get("kind") == "warp":
        return f"{warp[0].upper()}{warp[1:]}; it works on {pct(t.get('success'))} of samples."
    if t.get("kind") == "blend":
        return f"{blend[0].upper()}{blend[1:]}; it works on {pct(t.get('success'))} of samples."
    text = (f"The smallest mask and pattern that send other classes to the target: covers {pct(t.get('mask_l1'))} "
            f"of the image, works on {pct(t.get('success'))} of samples.")
    extra = ([blend] if t.get("blend_ratio") is not None else []) + \
        ([warp] if t.get("warp_displacement_px") is not None else [])
    if extra:
        text += f" And {'; and '.join(extra)}: {'both' if len(extra) == 1 else 'all'} were unlearned."
    searched = t.get("blend_search")
    if searched and not searched.get("joined"):
        text += (f" The weakest blend toward the target mixes in {pct(searched.get('ratio'))} of a pattern, not "
                 f"far below other classes' (anomaly {searched.get('anomaly')}, threshold "
                 f"{searched.get('threshold')}): no blend was unlearned.")
    return text


def _trigger_section(t: dict | None) -> list[str]:
    if not t:
        return []
    imgs = []
    if t.get("synthesised"):
        imgs += _trigger_imgs(t)
    imgs += [_img(p, f"sample {i + 1} with trigger") for i, p in enumerate(t.get("examples_png") or [])]
    if not any(imgs):
        return []
    title = "Synthesised trigger" if t.get("synthesised") else "Images carrying the trigger"
    cap = f"<p>{_trigger_caption(t)}</p>" if t.get("synthesised") and t.get("mask_l1") is not None else ""
    return [f"<h2>{title}</h2>{cap}", f'<div class="imgs" id="trigger">{"".join(imgs)}</div>']


def _file(path, sha) -> str:
    return f'<code>{e(str(path))}</code><br><code class="sha">sha256 {e(str(sha))}</code>'


def _clean_provenance(doc: dict) -> list[str]:
    m = doc.get("model") or {}
    rows = [[_file(m.get("path"), m.get("sha256")), "input model (never modified)"]]
    for o in doc.get("outputs") or []:
        diff = o.get("onnx_max_abs_diff")
        role = f"cleaned model ({o.get('format')})"
        if isinstance(diff, (int, float)):
            role += f"; onnxruntime matches PyTorch within {diff:.1e}".replace("-", "\u2011")  # keep 1e-06 whole
        rows.append([_file(o.get("path"), o.get("sha256")), e(role)])
    out = ["<h2>Provenance</h2>", _table(["file", "what"], rows)]
    facts = [("samples", samples_text(doc["samples"]) if doc.get("samples") else None), ("device", doc.get("device")),
             ("report digest", doc.get("report_digest")), ("created", doc.get("created"))]
    out.append(_table(None, [[e(k), f"<code>{e(str(v))}</code>"] for k, v in facts if v is not None]))
    return out


def _anomaly(ev: dict, threshold: float, target, labels, score, name: str) -> str:
    svg = plots.anomaly_by_class(ev, float(threshold), target, labels, name,
                                 float(score) if score is not None else None)
    return _chart(svg, name, f"Trigger inversion per class: a class whose trigger is unusually small scores high. "
                             f"Score {float(score or 0):.2f}; above the threshold, the model is suspected.")


# ---------- scan ----------

def _scan_verdict(doc: dict) -> tuple[str, str, str]:
    s = doc.get("summary") or {}
    if failing(doc):
        return "bad", f"Backdoor suspected in {failing(doc)} of {s.get('scanned')} model(s)", \
            "Do not ship the suspected model(s); 'bdscan clean' can remove the backdoor."
    if s.get("suspected"):
        return "neutral", f"Backdoor suspected in {s['suspected']} of {s.get('scanned')} model(s), accepted by review", \
            "Each suspected model and class matches a reviewed finding (--accepted); the gate passes."
    if not s.get("scanned"):
        return "neutral", "Nothing scanned", "No supported model was found among the inputs."
    if s.get("errors"):
        return "bad", "No backdoor found, but some models could not be scanned", ""
    return "ok", "No backdoor found", f"{s.get('scanned')} model(s) scanned; none shows a backdoor."


def _verdict_text(m: dict) -> str:
    v = verdict(m)
    return f"accepted: {accepted_reason(m)}" if v == "accepted" else v


def _scan_body(doc: dict) -> list[str]:
    s, models = doc.get("summary") or {}, doc.get("models") or []
    out = [_cards([("scanned", str(s.get("scanned", 0))), ("suspected", str(s.get("suspected", 0))),
                   ("accepted", str(s.get("accepted", 0))),
                   ("errors", str(s.get("errors", 0))), ("skipped", str(s.get("skipped", 0)))])]
    if models:
        out.append("<h2>Models</h2>")
        out.append(_table(["model", "verdict", "target", "score / threshold", "time", "sha256"], [[
            f"<code>{e(str(m.get('path')))}</code>", e(_verdict_text(m)),
            e("" if m.get("target_class") is None else f"{m['target_class']} ({m.get('target_label')})"),
            f"{m.get('score', 0):.2f} / {m.get('threshold', 0):g}", f"{m.get('seconds', 0):.1f} s",
            f"<code>{e(str(m.get('sha256', ''))[:16])}…</code>"] for m in models]))
    for i, m in enumerate(models):
        name = f"chart-anomaly-{i}"
        out.append(f"<h3>{e(str(m.get('path')))}: {e(_verdict_text(m))}</h3>")
        ev = m.get("evidence") or {}
        if ev.get("anomaly_index"):
            out.append(_anomaly(ev, m.get("threshold") or 0, m.get("target_class"), m.get("labels"), m.get("score"),
                                name))
        excess = (ev.get("activation_excess") or {}).get(str(m.get("target_class")))
        if m.get("suspected") and excess is not None:
            out.append(f'<p id="excess-{i}">For review, not part of the verdict: images carrying the synthesised trigger '
                       f"put {excess:.1%} of the last layer's input outside the range the clean samples reach. A backdoor "
                       "tends to drive units clean images leave at rest, a natural route to a class to stay within "
                       "their range; but some backdoors (warps, low-frequency patterns) stay within it too, and the "
                       "scale differs between architectures (README, Reviewed false alarms).</p>")
        for kind, note in model_notes(m):
            out.append(f'<p id="{kind}-{i}">{e(note)}.</p>')
        t = m.get("trigger") or {}
        imgs = _trigger_imgs(t)
        if any(imgs):
            out.append(f'<div class="imgs" id="trigger-{i}">{"".join(imgs)}</div>')
    problems = [[f"<code>{e(str(x.get('path')))}</code>", "error", e(str(x.get("error")))]
                for x in doc.get("errors") or []]
    problems += [[f"<code>{e(str(x.get('path')))}</code>", "skipped", e(str(x.get("reason")))]
                 for x in doc.get("skipped") or []]
    if problems:
        out += ["<h2>Not scanned</h2>", _table(["file", "", "why"], problems)]
    if models:
        out.append("<h2>Time</h2>")
        names = [str(m.get("path")).replace("\\", "/").rsplit("/", 1)[-1] for m in models]
        if len(set(names)) < len(names):  # same file name in two folders: show the paths
            names = [str(m.get("path")) for m in models]
        seconds = [m.get("seconds", 0) for m in models]
        out.append(_chart(plots.timings(dict(zip(names, seconds)), "chart-timings", "Time per model"),
                          "chart-timings", "Seconds spent on each model."))
        out.append("<h2>Provenance</h2>")
        out.append(_table(["model", "samples"], [[_file(m.get("path"), m.get("sha256")),
                                                  e(samples_text(m.get("samples")))] for m in models]))
    return out


def render_html(doc: dict) -> str:
    scan = doc.get("kind") == "scan"
    cls, title, sentence = _scan_verdict(doc) if scan else _clean_verdict(doc)
    body = _scan_body(doc) if scan else _clean_body(doc)
    tool = doc.get("tool") or {}
    sub = "" if scan else f"<p class=\"sub\"><code>{e(str((doc.get('model') or {}).get('path')))}</code></p>"
    head_title = e(f"bdscan {'scan' if scan else 'clean'} report: {title}")
    return (
        f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{head_title}</title>"
        f"<style>{CSS}</style></head><body><h1>bdscan {'scan' if scan else 'clean'} report</h1>{sub}"
        f"<section id=\"verdict\" class=\"verdict {cls}\"><div class=\"title\">{e(title)}</div>"
        f"{f'<p>{e(sentence)}</p>' if sentence else ''}</section>{''.join(body)}"
        f"<footer>bdscan {e(str(tool.get('version', '')))} · torch {e(str(tool.get('torch', '')))} · "
        f"{e(str(doc.get('created', '')))}</footer></body></html>\n"
    )
