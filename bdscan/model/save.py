"""Write a model in safetensors or ONNX, with the spec and provenance as metadata."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import bdscan
from bdscan.errors import ExportError
from bdscan.fileio import atomic_write_bytes
from bdscan.model.spec import ModelSpec


def provenance(source_sha256: str | None, report_digest: str | None = None, **extra: str) -> dict[str, str]:
    meta = {"bdscan_version": bdscan.__version__}
    if source_sha256:
        meta["source_sha256"] = source_sha256
    if report_digest:
        meta["bdscan_report"] = report_digest
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def write_model(
    module: nn.Module, spec: ModelSpec, fmt: str, target: Path, meta: dict[str, str], inputs: torch.Tensor,
    device: str = "cpu",
) -> dict:
    """Write ``module`` to ``target`` in ``fmt``; ``inputs`` (model-space tensors) feed the ONNX parity check.

    Returns what was checked: ``{"format", "path", "max_abs_diff", "provider"}``.
    """
    metadata = {**spec.to_metadata(), **meta}
    if fmt == "safetensors":
        if spec.architecture == "onnx":
            raise ExportError("a converted ONNX graph has no architecture to rebuild from safetensors; export to onnx")
        from bdscan.model.safetensors_io import dump_state

        atomic_write_bytes(target, dump_state(module.state_dict(), metadata))
        return {"format": fmt, "path": str(target), "max_abs_diff": None, "provider": None}
    if fmt == "onnx":
        from bdscan.model.onnx_io import export_onnx

        diff, provider = export_onnx(module, spec, target, inputs, metadata, device)
        return {"format": fmt, "path": str(target), "max_abs_diff": diff, "provider": provider}
    raise ExportError(f"unknown export format {fmt!r}")
