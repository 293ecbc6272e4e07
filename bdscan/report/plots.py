"""Charts for report.html: matplotlib figures rendered to inline SVG (no pyplot, no global backend state)."""

from __future__ import annotations

import io
import math
import re

BEFORE, AFTER, BAD, MUTED = "#9aa5b1", "#1f6feb", "#cf222e", "#57606a"
NATURAL = "#d4a72c"  # a class over the threshold whose trigger carries to proxy models: not flagged
RC = {
    "svg.fonttype": "none",  # text stays text: smaller files, selectable and searchable in the page
    "svg.hashsalt": "bdscan",  # stable ids, so one report renders to the same bytes
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "legend.frameon": False,
}


def _plain(name) -> str:
    """Class labels and layer names come from model files: '$' must not start matplotlib mathtext."""
    return str(name).replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def to_svg(fig, key: str) -> str:
    """The figure as an <svg> element; ids are prefixed with ``key`` so several charts can share one page."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE: invalid inside HTML
    text = re.sub(r'\bid="([^"]+)"', rf'id="{key}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{key}-\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{key}-\1"', text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{key}" ', 1)


def _render(build, key: str, *args) -> str:
    import matplotlib

    with matplotlib.rc_context(RC):  # rc applies when artists are made, so build inside the context
        fig = build(*args)
        return to_svg(fig, key)


def _pct_axis(ax) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(0, 1.05)


def _bar_labels(ax, bars, values) -> None:
    ax.bar_label(bars, labels=["n/a" if v is None else f"{100 * v:.0f}%" for v in values], padding=2, fontsize=8)


def per_class_accuracy(before: dict, after: dict, labels: list[str] | None) -> str:
    def build(before, after, labels):
        keys = list(after) if after else list(before)
        names = [_plain(labels[int(k)] if labels and k.isdigit() and int(k) < len(labels) else k) for k in keys]
        fig = _figure(max(4.5, 0.55 * len(keys) + 1.5), 2.8)
        ax = fig.add_subplot()
        x = range(len(keys))
        w = 0.4
        ax.bar([i - w / 2 for i in x], [before.get(k) or 0 for k in keys], w, color=BEFORE, label="before")
        ax.bar([i + w / 2 for i in x], [after.get(k) or 0 for k in keys], w, color=AFTER, label="after")
        ax.set_xticks(list(x), names, rotation=30 if max(map(len, names)) > 4 else 0, ha="right"
                      if max(map(len, names)) > 4 else "center")
        _pct_axis(ax)
        ax.set_ylabel("accuracy")
        ax.set_title("Per-class accuracy on clean samples", loc="left")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2)
        return fig

    return _render(build, "chart-per-class", before, after, labels)


def asr_and_accuracy(before: dict, after: dict, asr_bar: float | None) -> str:
    def build(before, after, asr_bar):
        fig = _figure(5.0, 2.6)
        axes = fig.subplots(1, 2)
        for ax, key, title in ((axes[0], "attack_success_rate", "Attack success rate"),
                               (axes[1], "accuracy", "Clean accuracy")):
            vals = [before.get(key), after.get(key)]
            bars = ax.bar(["before", "after"], [v or 0 for v in vals], 0.6,
                          color=[BAD if key == "attack_success_rate" else BEFORE, AFTER])
            _bar_labels(ax, bars, vals)
            _pct_axis(ax)
            ax.set_title(title)
            if key == "attack_success_rate" and asr_bar is not None:
                ax.axhline(asr_bar, color=MUTED, ls="--", lw=1)  # the bar for 'removed'; the caption says so
        return fig

    return _render(build, "chart-asr", before, after, asr_bar)


def _ratio_tick(v: float, _pos=None) -> str:
    r = 10 ** v
    return f"{r:g}" if r >= 0.01 else f"1e{v:.0f}"


def ratio_histograms(hists: dict, alpha: float | None, units: dict) -> str:
    def build(hists, alpha, units):
        from matplotlib.ticker import FuncFormatter, MultipleLocator

        names = list(hists)
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        fig = _figure(max(3.2 * cols, 4.5), 2.3 * rows + 0.3)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat[len(names):]:
            ax.set_visible(False)
        for ax, name in zip(axes.flat, names):
            h = hists[name]
            n = len(h["counts"])
            lo, hi = h["log10_min"], h["log10_max"]
            edges = [lo + (hi - lo) * i / n for i in range(n + 1)]
            ax.stairs(h["counts"], edges, fill=True, color=BEFORE)
            if alpha:
                t = math.log10(alpha)
                ax.axvspan(t, max(hi, t), color=BAD, alpha=0.08, lw=0)
                ax.axvline(t, color=BAD, ls="--", lw=1.2)
                ax.text(t, 0.97, f" α={alpha:g}", transform=ax.get_xaxis_transform(), color=BAD, va="top",
                        fontsize=8)
            ax.xaxis.set_major_locator(MultipleLocator(1))
            ax.xaxis.set_major_formatter(FuncFormatter(_ratio_tick))
            ax.set_title(f"{_plain(name)} ({units.get(name, 0)} edited)", fontsize=9)
            ax.set_xlabel("forget / retain activation")
        axes.flat[0].set_ylabel("units")
        return fig

    return _render(build, "chart-ratios", hists, alpha, units)


def _hbar(key: str, title: str, names: list[str], values: list[float], fmt: str, color: str, xlabel: str) -> str:
    def build():
        fig = _figure(5.5, 0.32 * len(names) + 1.0)
        ax = fig.add_subplot()
        bars = ax.barh(range(len(names)), values, color=color, tick_label=[_plain(n) for n in names])
        ax.invert_yaxis()  # first item on top, as in the tables
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=8)
        ax.set_xlim(0, max(values + [1e-9]) * 1.2)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        return fig

    return _render(build, key)


def units_per_layer(units: dict) -> str:
    return _hbar("chart-units", "Units edited per layer", list(units), [float(v) for v in units.values()], "{:.0f}",
                 AFTER, "units dampened")


def timings(t: dict, key: str = "chart-timings", title: str = "Time per stage") -> str:
    return _hbar(key, title, list(t), [float(v) for v in t.values()], "{:.2f} s", MUTED, "seconds")


def repair_history(history: list[dict], best_epoch: int | None) -> str:
    def build(history, best_epoch):
        fig = _figure(5.0, 2.4)
        ax = fig.add_subplot()
        ep = [h["epoch"] for h in history]
        ax.plot(ep, [h["accuracy"] for h in history], "o-", color=AFTER, label="clean accuracy (held out)")
        if any(h.get("asr") is not None for h in history):
            ax.plot(ep, [h.get("asr") or 0 for h in history], "s-", color=BAD, label="attack success (held out)")
        if best_epoch is not None:
            ax.axvline(best_epoch, color=MUTED, ls=":", lw=1)
        _pct_axis(ax)
        ax.set_xticks(ep)
        ax.set_xlabel("repair epoch (0 = the edit alone)")
        ax.set_title("Repair fine-tune")
        ax.legend(loc="center right", fontsize=8)
        return fig

    return _render(build, "chart-repair", history, best_epoch)


# the per-class signals detect() scores, as a report's `detection` carries them; the score is their largest
SCORED = ("anomaly_index", "warp_anomaly", "agreement_anomaly", "blend_anomaly")


def scored_by_class(evidence: dict, flaggable: bool = False) -> dict[str, float]:
    """Each class's score from a report's detection evidence: the largest of the scored signals it carries.
    ``flaggable``: the natural routes (``natural``, not flagged whatever their score) at -inf."""
    signals = [evidence.get(key) or {} for key in SCORED]
    natural = evidence.get("natural") or {} if flaggable else {}
    return {k: -math.inf if k in natural else max(sig[k] for sig in signals if k in sig)
            for k in evidence.get("anomaly_index", {})}


def anomaly_by_class(evidence: dict, threshold: float, target: int | None, labels: list[str] | None,
                     key: str, score: float | None = None) -> str:
    """Scan evidence: each class's trigger-size anomaly, the decision threshold, and the suspected class's score."""

    def build():
        keys = list(evidence.get("anomaly_index", {}))
        names = [_plain(labels[int(k)] if labels and int(k) < len(labels) else k) for k in keys]
        warp = evidence.get("warp_anomaly") or {}
        scores = scored_by_class(evidence)  # the largest of the scored signals counts, as in the score
        vals = [max(0.0, scores[k]) for k in keys]
        fig = _figure(max(4.5, 0.5 * len(keys) + 1.5), 2.6)
        ax = fig.add_subplot()
        natural = evidence.get("natural") or {}  # over the threshold, but their triggers carry: not flagged
        colors = [BAD if target is not None and int(k) == target else NATURAL if k in natural else BEFORE
                  for k in keys]
        from matplotlib.patches import Patch

        ax.bar(range(len(keys)), vals, color=colors, tick_label=names)  # positions: labels may repeat
        top = max(vals + [threshold])
        if target is not None and score is not None and str(target) in keys:
            # the score adds the margin evidence to the bar; the detector decides on the score
            ax.plot([keys.index(str(target))], [score], "D", color="#1f2328", label=f"score {score:.2f}")
            top = max(top, score)
        ax.axhline(threshold, color=BAD, ls="--", lw=1.2, label=f"threshold {threshold:g}")
        ax.set_ylim(0, top * 1.4)  # headroom for the legend
        ax.set_ylabel("anomaly index")
        ax.set_title("How unusually small each class's synthesised trigger is", loc="left")
        label = "anomaly (mask, warp or mask with feature shift)" if warp else "trigger-size anomaly"
        handles = [Patch(color=BEFORE, label=label), *ax.get_legend_handles_labels()[0]]
        if natural:
            handles.insert(1, Patch(color=NATURAL, label="natural route (its trigger carries): not flagged"))
        ax.legend(handles=handles, loc="upper right", fontsize=8, ncols=3)
        if any(len(n) > 4 for n in names):
            ax.tick_params(axis="x", labelrotation=30)
        return fig

    return _render(build, key)
