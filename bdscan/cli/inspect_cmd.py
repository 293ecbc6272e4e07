"""``bdscan inspect``: what a model file holds."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from bdscan.cli import render
from bdscan.cli.app import app
from bdscan.cli.options import ArchOpt


class InspectFormat(str, enum.Enum):
    text = "text"
    json = "json"


@app.command("inspect")
def inspect_cmd(
    model: Optional[Path] = typer.Argument(None, help="Model file (.safetensors or .onnx).", show_default=False),
    arch: Optional[str] = ArchOpt,
    fmt: InspectFormat = typer.Option(InspectFormat.text, "--format", "-f", help="Output format."),
    list_architectures: bool = typer.Option(False, "--list-architectures", help="List known architectures."),
) -> None:
    """Show a model's format, architecture, input shape, classes and layers with parameter counts."""
    from bdscan.errors import UsageError
    from bdscan.inspect import architectures_table, describe

    if list_architectures:
        rows = architectures_table()
        if fmt is InspectFormat.json:
            render.print_json({"architectures": rows})
        else:
            table = Table("architecture", "source")
            for row in rows:
                table.add_row(escape(row["name"]), escape(row["source"]))
            render.out.print(table)
        return
    if model is None:
        raise UsageError("missing MODEL argument (or --list-architectures)")
    info = describe(model, arch)
    if fmt is InspectFormat.json:
        render.print_json(info)
        return
    spec = info["spec"]
    render.out.print(f"[bold]{escape(info['path'])}[/]  ({spec['format']}, sha256 {info['sha256'][:16]}…)")
    render.out.print(f"architecture  {escape(spec['architecture'])}")
    render.out.print(f"input         {'x'.join(str(v) for v in spec['input_shape'])} (C,H,W)"
                     + (f", mean {spec['mean']}, std {spec['std']}" if spec["mean"] else ""))
    labels = spec["labels"] or [str(i) for i in range(spec["num_classes"])]
    render.out.print(f"classes       {spec['num_classes']}: {escape(', '.join(labels))}")
    render.out.print(f"parameters    {info['parameters']:,}")
    table = Table("layer", "type", "parameters", title="layers")
    for layer in info["layers"]:
        table.add_row(escape(layer["name"]), layer["type"], f"{layer['parameters']:,}")
    render.out.print(table)
