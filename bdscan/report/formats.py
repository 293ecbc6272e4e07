"""Output formats behind one small interface, chosen through an Enum (exhaustiveness is tested)."""

from __future__ import annotations

import enum
import json
from typing import Callable


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"
    markdown = "markdown"
    html = "html"
    sarif = "sarif"


def _json(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _markdown(doc: dict) -> str:
    from bdscan.report.markdown import render_markdown

    return render_markdown(doc)


def _html(doc: dict) -> str:
    from bdscan.report.html import render_html

    return render_html(doc)


def _sarif(doc: dict) -> str:
    from bdscan.report.sarif import render_sarif

    return json.dumps(render_sarif(doc), indent=2) + "\n"


def _text(doc: dict) -> str:  # plain text for files; the terminal gets the Rich rendering
    return _markdown(doc)


WRITERS: dict[OutputFormat, Callable[[dict], str]] = {
    OutputFormat.text: _text,
    OutputFormat.json: _json,
    OutputFormat.markdown: _markdown,
    OutputFormat.html: _html,
    OutputFormat.sarif: _sarif,
}


def render(doc: dict, fmt: OutputFormat) -> str:
    return WRITERS[fmt](doc)
