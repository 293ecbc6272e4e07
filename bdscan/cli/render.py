"""Rich consoles and the progress observer the core reports through."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from rich.console import Console
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
