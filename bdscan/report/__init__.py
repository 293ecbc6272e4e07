"""Reports: one JSON-able document per run, and one writer per output format."""

from bdscan.report.formats import OutputFormat, render

__all__ = ["OutputFormat", "render"]
