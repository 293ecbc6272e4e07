"""safetensors in and out, with the header checked before any tensor is read."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from bdscan.errors import ModelLoadError

_DTYPE_SIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
MAX_HEADER = 100 * 1024 * 1024


def read_header(path: Path) -> tuple[dict, dict[str, str], int]:
    """Return (tensor entries, metadata, data start offset); raise ModelLoadError on any inconsistency."""
    size = path.stat().st_size
    if size < 8:
        raise ModelLoadError(f"{path.name}: not a safetensors file (only {size} bytes)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n == 0:
            raise ModelLoadError(f"{path.name}: corrupt safetensors header (header length 0)")
        if n > MAX_HEADER or 8 + n > size:
            raise ModelLoadError(f"{path.name}: corrupt safetensors header (header length {n} beyond file size {size})")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelLoadError(f"{path.name}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path.name}: corrupt safetensors header (not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelLoadError(f"{path.name}: __metadata__ must map names to strings")
    data_len = size - 8 - n
    _check_not_truncated(path, header, data_len)
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or {"dtype", "shape", "data_offsets"} - entry.keys():
            raise ModelLoadError(f"{path.name}: tensor {name!r} has a malformed header entry")
        dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_SIZE:
            raise ModelLoadError(f"{path.name}: tensor {name!r} has unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ModelLoadError(f"{path.name}: tensor {name!r} has an invalid shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)):
            raise ModelLoadError(f"{path.name}: tensor {name!r} has invalid data offsets")
        start, end = offs
        if not 0 <= start <= end <= data_len:
            raise ModelLoadError(
                f"{path.name}: tensor {name!r} data offsets {start}..{end} out of range (data is {data_len} bytes)"
            )
        if end - start != math.prod(shape) * _DTYPE_SIZE[dtype]:
            raise ModelLoadError(f"{path.name}: tensor {name!r} byte size does not match its shape and dtype")
        spans.append((start, end, name))
    spans.sort()
    for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise ModelLoadError(f"{path.name}: tensors {n0!r} and {n1!r} overlap in the data section")
    return header, meta, 8 + n


def _check_not_truncated(path: Path, header: dict, data_len: int) -> None:
    """Tensors laid end to end from 0 (as every writer does) but running past the file: a cut-off download."""
    spans = sorted(
        tuple(e["data_offsets"]) for e in header.values()
        if isinstance(e, dict) and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
        and all(isinstance(o, int) for o in e["data_offsets"])
    )
    if not spans or spans[-1][1] <= data_len or spans[0][0] != 0:
        return
    if all(s1 == e0 for (_, e0), (s1, _) in zip(spans, spans[1:])):
        raise ModelLoadError(
            f"{path.name}: file is truncated: the header needs {spans[-1][1]} bytes of tensor data, "
            f"the file has {data_len}"
        )


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    header, meta, _ = read_header(path)
    for name, entry in header.items():
        if entry["dtype"] not in _FLOAT_DTYPES and not name.endswith("num_batches_tracked"):
            raise ModelLoadError(
                f"{path.name}: tensor {name!r} has dtype {entry['dtype']}; model weights must be floating point"
            )
    try:
        state = st_load(path.read_bytes())
    except Exception as exc:  # the rust parser's own checks, as a last line
        raise ModelLoadError(f"{path.name}: cannot read safetensors data: {exc}") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelLoadError(f"{path.name}: tensor {name!r} contains NaN or Inf values")
    return state, meta


def dump_state(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes that depend only on the tensors and metadata (a seeded run repeats them exactly)."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    raw = st_save(clean, metadata=metadata)
    # the writer emits __metadata__ in hash-map order, which changes from process to process: sort the header
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + raw[8 + n:]
