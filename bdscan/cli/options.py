"""Options shared by several commands."""

from __future__ import annotations

from typing import Optional

import typer


ArchOpt = typer.Option(None, "--arch", help="Architecture name (e.g. torchvision.resnet18) or module:callable; "
                       "overrides the file's metadata.")
MeanOpt = typer.Option(None, "--mean", help="Per-channel input mean, comma-separated (overrides metadata).")
StdOpt = typer.Option(None, "--std", help="Per-channel input std, comma-separated (overrides metadata).")


def parse_floats(text: Optional[str], flag: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=flag) from None


SearchesOpt = typer.Option(None, "--searches", help="Independent trigger searches (seeds SEED, SEED+1, ...) that "
                           "must each put a class above the threshold to flag it: drops flags that come at some seeds "
                           "only; each search adds one detection's time (or 'searches' in \\[tool.bdscan]) "
                           "\\[default: 1].")

ReferenceOpt = typer.Option(None, "--reference", help="A trusted model of the same task (the last release, one "
                            "trained on vetted data): detection scores each class against how easy the same search "
                            "finds it there, so classes every model of the task makes easy are not flagged; a class "
                            "the reference itself flags is a blind spot, named in the report; doubles detection's "
                            "time (or 'reference' in \\[tool.bdscan]).")
