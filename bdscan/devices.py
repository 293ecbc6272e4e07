"""Device selection: auto picks CUDA when present; asking for CUDA without it is an error."""

from __future__ import annotations

import torch

from bdscan.errors import DeviceError, UsageError


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    raise UsageError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
