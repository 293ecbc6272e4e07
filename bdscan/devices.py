"""Device selection and speed: bf16 autocast, channels_last, out-of-memory back-off, a folded model copy for input
optimisation, the allocator setting the CLI uses."""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from typing import Callable, TypeVar

import torch
from torch import nn

from bdscan.allocator import keep_freed_memory  # noqa: F401  (benchmarks and scripts import it from here)
from bdscan.errors import DeviceError, UsageError

T = TypeVar("T")


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if name.startswith("cuda:") and not name[5:].isdigit():
            raise UsageError(f"--device {name!r}: expected cuda:N with N a number")
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    raise UsageError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")


def autocast(device: torch.device):
    """bf16 autocast where the card supports it; a no-op on the CPU (CPU runs stay exactly repeatable)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def full_precision(device: torch.device):
    """Plain fp32 on CUDA (no TF32) for trigger inversion: its small masks do not survive reduced precision
    (under bf16 the bundled example's synthesised mask came out 10x larger and 3.4% ASR survived cleaning
    instead of 1.8%: benchmarks/bf16_inversion.py)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to ``device``; channels_last memory layout on CUDA (faster convolutions)."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def inference_copy(model: nn.Module, probe: torch.Tensor) -> nn.Module:
    """A frozen copy of ``model`` for optimising inputs against: eval mode, each BatchNorm folded into the
    convolution before it (torch.fx), channels_last. On CPU a forward and backward pass of the lab models took
    1.2 to 1.6 times less (benchmarks/inference_copy.py). The copy must give the model's logits on ``probe``;
    where it cannot be traced or does not, the plain copy serves."""
    from torch.fx.experimental.optimization import fuse

    plain = copy.deepcopy(model).eval()
    for p in plain.parameters():
        p.requires_grad_(False)
    try:
        fused = fuse(plain, inplace=False)
    except Exception:  # any model fx cannot trace (data-dependent control flow, custom leaves): unfused
        fused = plain
    fast = fused.to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, got = plain(probe), fast(probe)
    if not torch.allclose(got, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max().clamp(min=1.0))):
        return plain
    return fast


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pinned host memory and a non-blocking copy for CUDA; a plain move otherwise."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def with_backoff(fn: Callable[[int], T], batch: int, *, minimum: int = 1, say: Callable[[str], None] | None = None) -> T:
    """Run ``fn(batch)``; on out-of-memory halve the batch and retry, down to ``minimum``."""
    while True:
        try:
            return fn(batch)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_oom(exc) or batch <= minimum:
                if is_oom(exc):
                    raise DeviceError(f"out of GPU memory even at batch size {batch}; try --device cpu") from None
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch = max(minimum, batch // 2)
            if say is not None:
                say(f"out of GPU memory; retrying with batch size {batch}")
