"""``bdscan export``: convert between safetensors and ONNX with a parity check."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import typer

from bdscan.cli import render
from bdscan.cli.app import app
from bdscan.cli.options import ArchOpt


class ExportFormat(str, enum.Enum):
    onnx = "onnx"
    safetensors = "safetensors"


@app.command("export")
def export_cmd(
    model: Path = typer.Argument(..., help="Model file (.safetensors or .onnx).", show_default=False),
    to: ExportFormat = typer.Option(..., "--to", help="Target format."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (must not be the input)."),
    arch: Optional[str] = ArchOpt,
    samples: Optional[Path] = typer.Option(None, "--samples", "-s", help="Clean images for the ONNX parity "
                                           "check (default: 16 seeded random images)."),
) -> None:
    """Write MODEL in another format; ONNX exports are checked against torch with onnxruntime."""
    from bdscan.export import export_model

    result = export_model(model, to.value, out, arch, samples)
    diff = result["max_abs_diff"]
    render.err.print(
        f"wrote {result['path']}" + (f" (onnxruntime parity: max |diff| {diff:.2e} on {result['parity_inputs']})"
                                     if diff is not None else "")
    )
