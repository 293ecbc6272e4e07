"""Rich consoles and the progress observer the core reports through."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# results on stdout, everything else on stderr; Rich handles TTY detection and NO_COLOR
out = Console(soft_wrap=True)
err = Console(stderr=True)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


class RichObserver:
    """Implements bdscan.pipeline.Observer with a Rich progress bar on stderr."""

    def __init__(self, console: Console = err, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def stage(self, name: str) -> None:
        if not self.quiet:
            self.console.log(f"[bold]{name}[/]")

    def start(self, key: str, description: str, total: int | None) -> None:
        if self.quiet or self._progress is None:
            return
        self._tasks[key] = self._progress.add_task(description, total=total)

    def advance(self, key: str, n: int = 1, **info) -> None:
        if self._progress is not None and key in self._tasks:
            self._progress.advance(self._tasks[key], n)

    def finish(self, key: str) -> None:
        if self._progress is not None and key in self._tasks:
            task = self._tasks.pop(key)
            self._progress.update(task, completed=self._progress.tasks[task].total or 1)

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.log(text)

    @contextmanager
    def live(self):
        if self.quiet:
            yield self
            return
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=self.console, transient=True,
        ) as progress:
            self._progress = progress
            try:
                yield self
            finally:
                self._progress = None


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def clean_summary(doc: dict) -> None:
    from rich.panel import Panel
    from rich.table import Table

    verdict = doc["verdict"]
    style = {"removed": "bold green", "no_backdoor_found": "bold green"}.get(verdict, "bold red")
    title = {"removed": "Backdoor removed", "not_removed": "Backdoor NOT removed",
             "no_backdoor_found": "No backdoor found: nothing written"}[verdict]
    lines = [f"[{style}]{title}[/]"]
    if doc.get("target_class") is not None:
        lines.append(f"target class {doc['target_class']} ({escape(str(doc.get('target_label')))}), via {doc['mode']}")
    out.print(Panel("\n".join(lines), title=f"bdscan clean: {escape(doc['model']['path'])}", expand=False))
    from bdscan.report.scan import detection_notes

    for _, note in detection_notes(doc.get("detection")):  # reference and blind spots: a "no backdoor" to qualify
        out.print(escape(note))
    b, a = doc.get("before"), doc.get("after")
    if b and a:
        t = Table("measure", "before", "after")
        t.add_row(f"clean accuracy (held-out, n={a['n_clean']})", _pct(b["accuracy"]), _pct(a["accuracy"]))
        t.add_row(f"attack success (forget set, n={a['n_forget']})", _pct(b["attack_success_rate"]),
                  _pct(a["attack_success_rate"]))
        out.print(t)
    e = doc.get("edit")
    if e:
        out.print(f"edited {e['total_units']} units: " + escape(", ".join(f"{k} {v}" for k, v in e["units_per_layer"].items() if v)))
    r = doc.get("repair")
    if r:
        out.print("repair: " + (f"kept epoch {r['best_epoch']}" if r["used"] else "no epoch beat the edit alone; kept the edit"))
    if doc.get("timings"):
        out.print("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in doc["timings"].items()))
    for o in doc.get("outputs", []):
        out.print(f"wrote {escape(o['path'])}")


def scan_summary(doc: dict) -> None:
    from rich.table import Table

    from bdscan.report.scan import accepted_reason, model_notes, verdict as model_verdict

    s = doc["summary"]
    if doc["models"]:
        t = Table("model", "verdict", "target", "score", "time")
        for m in doc["models"]:
            verdict = {"suspected": "[bold red]SUSPECTED[/]", "clean": "[green]clean[/]",
                       "accepted": "[yellow]accepted[/] " + escape(accepted_reason(m))}[
                model_verdict(m)]
            tgt = "" if m["target_class"] is None else f"{m['target_class']} ({escape(str(m['target_label']))})"
            t.add_row(escape(m["path"]), verdict, tgt, f"{m['score']:.2f}", f"{m['seconds']:.1f}s")
        out.print(t)
        for m in doc["models"]:
            for _, note in model_notes(m):
                out.print(f"{escape(m['path'])}: {escape(note)}")
    accepted = f" ({s['accepted']} accepted)" if s.get("accepted") else ""
    out.print(f"{s['scanned']} scanned, {s['suspected']} suspected{accepted}, {s['errors']} error(s), "
              f"{s['skipped']} skipped")
