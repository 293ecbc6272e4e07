"""Per-unit activation statistics through forward hooks that are always removed.

A unit is a channel of a BatchNorm layer (or of a convolution when the model has no BatchNorm) or a neuron
of a hidden linear layer. Its activation on an image is the spatial mean of the rectified layer output:
dampening a unit's weights by beta scales exactly that quantity by beta.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from bdscan.errors import UsageError

@dataclass(frozen=True)
class UnitLayer:
    name: str  # dotted module name
    kind: str  # "bn", "conv" or "linear"
    units: int


def unit_layers(model: nn.Module) -> list[UnitLayer]:
    """Every layer whose output channels can be dampened, in forward (registration) order.

    BatchNorm channels are preferred; convolutions count only in models without BatchNorm. The last linear
    layer (the classifier head) is excluded: its outputs are classes, not features.
    """
    mods = list(model.named_modules())
    has_bn = any(isinstance(m, nn.BatchNorm2d) for _, m in mods)
    linears = [n for n, m in mods if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None
    out = []
    for name, m in mods:
        if isinstance(m, nn.BatchNorm2d):
            out.append(UnitLayer(name, "bn", m.num_features))
        elif isinstance(m, nn.Conv2d) and not has_bn:
            out.append(UnitLayer(name, "conv", m.out_channels))
        elif isinstance(m, nn.Linear) and name != head:
            out.append(UnitLayer(name, "linear", m.out_features))
    return out


def choose_layers(model: nn.Module, layers: Sequence[str] | str | None = None) -> list[UnitLayer]:
    """``"all"``, ``"late"`` (default: the later half of the unit layers, as METHOD.md's later stages) or names."""
    candidates = unit_layers(model)
    if not candidates:
        raise UsageError("the model has no BatchNorm, convolution or hidden linear layer to edit")
    if layers is None or layers == "late":
        return candidates[len(candidates) // 2:]
    if layers == "all":
        return candidates
    by_name = {u.name: u for u in candidates}
    known = dict(model.named_modules())
    chosen = []
    for name in layers:
        if name in by_name:
            chosen.append(by_name[name])
        elif name in known:
            raise UsageError(f"layer {name!r} is a {type(known[name]).__name__}; editable layers are BatchNorm, "
                             "convolution (without BatchNorm) and hidden linear layers")
        else:
            raise UsageError(f"no layer named {name!r}; e.g. {', '.join(list(by_name)[:4])}")
    return chosen


def _reduce(a: torch.Tensor) -> torch.Tensor:
    return a.mean(dim=(2, 3)) if a.dim() == 4 else a


@contextmanager
def hooks(model: nn.Module, layers: Sequence[UnitLayer], store: dict[str, list[torch.Tensor]]) -> Iterator[None]:
    """Record per-unit activations of ``layers`` into ``store``; hooks are removed however the block ends."""
    handles = []
    try:
        for layer in layers:
            module = model.get_submodule(layer.name)

            def hook(_m, _inp, out, name=layer.name):
                a = torch.relu(out.detach().float())
                store.setdefault(name, []).append(_reduce(a))

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def activations(model: nn.Module, layers: Sequence[UnitLayer], x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per-image, per-unit activations: ``{layer: (N, units)}``."""
    store: dict[str, list[torch.Tensor]] = {}
    model.eval()
    device = next(model.parameters()).device
    with hooks(model, layers, store):
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(device))
    return {name: torch.cat(parts).cpu() for name, parts in store.items()}


def importance(acts: dict[str, torch.Tensor], eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """I(u) = mean over images of |a_u(x)|, plus epsilon (METHOD.md step 2)."""
    return {name: a.abs().mean(dim=0) + eps for name, a in acts.items()}


def linear_layers(model: nn.Module, last: int = 2) -> list[str]:
    """The last ``last`` linear layers (the head and the hidden layer before it, where there is one)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-last:][::-1]


@torch.no_grad()
def layer_inputs(model: nn.Module, name: str, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The (flattened) input of layer ``name`` for each image; the hook is removed however the pass ends."""
    module = model.get_submodule(name)
    parts: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, inp, _out: parts.append(inp[0].detach().float().flatten(1)))
    model.eval()
    device = next(model.parameters()).device
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(device))
    finally:
        handle.remove()
    return torch.cat(parts).cpu()
