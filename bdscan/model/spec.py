"""ModelSpec: what bdscan knows about a model besides its weights."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Mapping

from bdscan.errors import ModelLoadError


@dataclass(frozen=True)
class ModelSpec:
    architecture: str  # registry name, or "onnx" for a converted graph
    num_classes: int
    input_shape: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    format: str = "safetensors"

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    def label(self, k: int) -> str:
        return self.labels[k] if self.labels else str(k)

    def with_(self, **changes) -> "ModelSpec":
        return replace(self, **changes)

    def to_metadata(self) -> dict[str, str]:
        """The safetensors ``__metadata__`` keys of the formats contract (all values strings)."""
        meta = {
            "architecture": self.architecture,
            "num_classes": str(self.num_classes),
            "input_size": ",".join(str(v) for v in self.input_shape),
        }
        if self.mean is not None:
            meta["mean"] = json.dumps(list(self.mean))
        if self.std is not None:
            meta["std"] = json.dumps(list(self.std))
        if self.labels is not None:
            meta["labels"] = json.dumps(list(self.labels))
        return meta

    def to_dict(self) -> dict:
        return {
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "labels": list(self.labels) if self.labels is not None else None,
            "format": self.format,
        }


def parse_input_size(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in str(text).replace("x", ",").split(","))
    except ValueError:
        raise ModelLoadError(f"input_size {text!r} is not 'C,H,W'") from None
    if len(parts) == 2:  # H,W given: assume RGB, as timm configs do for images
        parts = (3, *parts)
    if len(parts) != 3 or any(p <= 0 for p in parts):
        raise ModelLoadError(f"input_size {text!r} is not 'C,H,W' with positive sizes")
    if parts[0] not in (1, 3, 4):
        raise ModelLoadError(f"input_size {text!r}: {parts[0]} channels; bdscan reads 1, 3 or 4")
    return parts  # type: ignore[return-value]


def _float_list(value, key: str, channels: int) -> tuple[float, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ModelLoadError(f"metadata {key!r} is not a JSON list of numbers") from None
    if isinstance(value, (int, float)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise ModelLoadError(f"metadata {key!r} is not a list of numbers")
    if len(value) == 1:
        value = list(value) * channels
    if len(value) != channels:
        raise ModelLoadError(f"metadata {key!r} has {len(value)} values for {channels} channels")
    if key == "std" and any(v <= 0 for v in value):
        raise ModelLoadError("metadata 'std' must be positive")
    return tuple(float(v) for v in value)


def spec_from_mapping(meta: Mapping, *, architecture: str | None, fmt: str, source: str) -> ModelSpec:
    """Build a spec from ``__metadata__`` or a timm-style config.json mapping.

    ``architecture`` (from ``--arch``) wins over the mapping's own.
    """
    arch = architecture or meta.get("architecture")
    if not arch:
        raise ModelLoadError(
            f"{source}: no architecture given; pass --arch NAME, or add 'architecture' to the file's metadata "
            "or a config.json beside it"
        )
    raw_classes = meta.get("num_classes")
    if raw_classes is None:
        raise ModelLoadError(f"{source}: 'num_classes' is missing")
    try:
        num_classes = int(raw_classes)
    except (TypeError, ValueError):
        raise ModelLoadError(f"{source}: num_classes {raw_classes!r} is not an integer") from None
    if num_classes < 2:
        raise ModelLoadError(f"{source}: num_classes must be at least 2, got {num_classes}")
    size = meta.get("input_size")
    if size is None:
        raise ModelLoadError(f"{source}: 'input_size' (C,H,W) is missing")
    if isinstance(size, (list, tuple)):
        size = ",".join(str(v) for v in size)
    shape = parse_input_size(size)
    mean = _float_list(meta["mean"], "mean", shape[0]) if meta.get("mean") is not None else None
    std = _float_list(meta["std"], "std", shape[0]) if meta.get("std") is not None else None
    labels = None
    raw_labels = meta.get("labels") or meta.get("label_names")
    if raw_labels is not None:
        if isinstance(raw_labels, str):
            try:
                raw_labels = json.loads(raw_labels)
            except json.JSONDecodeError:
                raise ModelLoadError(f"{source}: 'labels' is not a JSON list") from None
        if not isinstance(raw_labels, list) or not all(isinstance(v, str) for v in raw_labels):
            raise ModelLoadError(f"{source}: 'labels' must be a list of strings")
        if len(raw_labels) != num_classes:
            raise ModelLoadError(f"{source}: {len(raw_labels)} labels for {num_classes} classes")
        labels = tuple(raw_labels)
    return ModelSpec(str(arch), num_classes, shape, mean, std, labels, fmt)
