"""``export``: one model file to another format."""

from __future__ import annotations

from pathlib import Path

import torch

from bdscan.data import load_samples
from bdscan.errors import OutputError
from bdscan.model import Normalized, load_model, provenance, write_model


def export_model(path: Path, fmt: str, out: Path, arch: str | None = None, samples: Path | None = None) -> dict:
    if out.resolve() == path.resolve():
        raise OutputError(f"--out {out} is the input file; choose another path")
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder; give a file path")
    if not out.parent.exists():
        raise OutputError(f"folder {out.parent} does not exist")
    loaded = load_model(path, arch)
    wrapper = Normalized(loaded.module, loaded.spec)
    if samples is not None:
        x = load_samples(samples, loaded.spec, min_per_class=1).x[:64]
        what = f"{len(x)} sample images"
    else:
        x = torch.rand(16, *loaded.spec.input_shape, generator=torch.Generator().manual_seed(0))
        what = "16 seeded random images"
    inputs = wrapper.normalise(x)
    result = write_model(loaded.module, loaded.spec.with_(format=fmt), fmt, out, provenance(loaded.sha256), inputs)
    result["parity_inputs"] = what
    return result
