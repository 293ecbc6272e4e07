"""``bdscan report``: re-render a saved report.json as HTML or Markdown."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from bdscan.cli.app import app


class ReportFormat(str, enum.Enum):
    html = "html"
    md = "md"
    sarif = "sarif"


_TO_OUTPUT = {"html": "html", "md": "markdown", "sarif": "sarif"}


def load_report(path: Path) -> dict:
    from bdscan.errors import ReportError
    from bdscan.report.build import SCHEMA_VERSION

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(doc, dict) or doc.get("kind") not in ("clean", "scan"):
        raise ReportError(f"{path} is not a bdscan report (no \"kind\": \"clean\" or \"scan\")")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ReportError(f"{path} has report schema {version!r}; this bdscan reads up to {SCHEMA_VERSION}")
    return doc


def render_saved(doc: dict, fmt: ReportFormat, path: Path) -> str:
    from bdscan.errors import ReportError
    from bdscan.report import OutputFormat, render

    try:
        if fmt is ReportFormat.sarif and doc.get("kind") != "scan":
            raise ReportError(f"{path}: SARIF is written for scan reports only")
        return render(doc, OutputFormat(_TO_OUTPUT[fmt.value]))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # a hand-edited or truncated file
        raise ReportError(f"{path} is missing or has malformed report fields ({type(exc).__name__}: {exc})") from None


@app.command("report")
def report_cmd(
    report: Path = typer.Argument(..., help="A report.json written by 'bdscan clean' or 'bdscan scan --format json'.",
                                  show_default=False),
    fmt: Optional[ReportFormat] = typer.Option(None, "--format", "-f", help="html, md or sarif (scan reports; "
                                               "default: html when --output ends in .html, else md)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Re-render a saved report as a self-contained HTML page, a Markdown job summary or SARIF."""
    from bdscan.fileio import atomic_write_text

    if fmt is None:
        html_out = output is not None and output.suffix.lower() in (".html", ".htm")
        fmt = ReportFormat.html if html_out else ReportFormat.md
    text = render_saved(load_report(report), fmt, report)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(output, text)
