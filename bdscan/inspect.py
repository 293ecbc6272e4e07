"""Facts about a model file, as plain data (the CLI renders them)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from bdscan.model import load_model
from bdscan.model import registry


def describe(path: Path, arch: str | None = None) -> dict:
    loaded = load_model(path, arch)
    layers = []
    for name, module in loaded.module.named_modules():
        if not name or any(True for _ in module.children()):
            continue
        n = sum(p.numel() for p in module.parameters(recurse=False))
        if n or isinstance(module, (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            layers.append({"name": name, "type": type(module).__name__, "parameters": n})
    return {
        "path": str(path),
        "sha256": loaded.sha256,
        "spec": loaded.spec.to_dict(),
        "parameters": sum(p.numel() for p in loaded.module.parameters()),
        "layers": layers,
        "metadata": {k: v for k, v in loaded.metadata.items() if len(v) < 2000},
    }


def architectures_table() -> list[dict]:
    return registry.list_architectures()
