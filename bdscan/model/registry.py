"""Architecture registry: built-ins, plugins from entry points, and ``module:callable`` one-offs.

A builder is ``build(num_classes: int) -> torch.nn.Module``. Input channels are adapted afterwards by
replacing the first convolution, so builders need not know about greyscale inputs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from dataclasses import dataclass
from typing import Callable

from torch import nn

from bdscan.errors import ArchitectureError

ENTRY_POINT_GROUP = "bdscan.architectures"
Builder = Callable[[int], nn.Module]


@dataclass(frozen=True)
class ArchInfo:
    name: str
    source: str  # "bdscan", "torchvision", or the plugin's distribution name
    builder: Builder


_BUILTINS: dict[str, ArchInfo] = {}
_plugins: dict[str, ArchInfo] | None = None


class PluginWarning(UserWarning):
    """A plugin could not be loaded or clashes with another architecture."""


def register(name: str, source: str = "bdscan") -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        _BUILTINS[name] = ArchInfo(name, source, fn)
        return fn

    return deco


def _torchvision_names() -> list[str]:
    from torchvision import models

    return sorted(models.list_models(module=models))


def _torchvision_builder(name: str) -> Builder:
    def build(num_classes: int) -> nn.Module:
        from torchvision import models

        return models.get_model(name, weights=None, num_classes=num_classes)

    return build


def _load_plugins() -> dict[str, ArchInfo]:
    global _plugins
    if _plugins is not None:
        return _plugins
    found: dict[str, ArchInfo] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.module
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break bdscan
            warnings.warn(
                f"plugin {dist!r} (architecture {ep.name!r}) failed to load: {type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        if not callable(obj):
            warnings.warn(f"plugin {dist!r}: entry {ep.name!r} is not callable; ignored", PluginWarning, stacklevel=2)
            continue
        if ep.name in found:
            warnings.warn(
                f"architecture {ep.name!r} is provided by {found[ep.name].source!r} and {dist!r}; "
                f"using the one from {found[ep.name].source!r}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        found[ep.name] = ArchInfo(ep.name, dist, obj)
    _plugins = found
    return found


def reset_plugins() -> None:
    """Forget loaded plugins (tests install and remove packages)."""
    global _plugins
    _plugins = None


def available() -> dict[str, ArchInfo]:
    """Every known architecture name; built-ins win over plugins of the same name (with a warning)."""
    _ensure_builtins()
    merged: dict[str, ArchInfo] = {}
    for name in _torchvision_names():
        full = f"torchvision.{name}"
        merged[full] = ArchInfo(full, "torchvision", _torchvision_builder(name))
    merged.update(_BUILTINS)
    for name, info in _load_plugins().items():
        if name in merged:
            warnings.warn(
                f"architecture {name!r} from plugin {info.source!r} clashes with the one from "
                f"{merged[name].source!r}; using {merged[name].source!r}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        merged[name] = info
    return merged


def _resolve_callable(spec: str) -> Builder:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ArchitectureError(f"architecture {spec!r}: cannot import {module_name!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ArchitectureError(f"architecture {spec!r}: {module_name!r} has no {attr!r}")
    if not callable(obj):
        raise ArchitectureError(f"architecture {spec!r} is not callable")
    return obj


def lookup(name: str) -> ArchInfo:
    if ":" in name:
        return ArchInfo(name, name.partition(":")[0], _resolve_callable(name))
    known = available()
    if name in known:
        return known[name]
    # a bare torchvision name is a common slip: accept it
    if f"torchvision.{name}" in known:
        return known[f"torchvision.{name}"]
    custom = sorted(n for n in known if not n.startswith("torchvision."))
    raise ArchitectureError(
        f"unknown architecture {name!r}; known: {', '.join(custom)} and torchvision.<name> "
        f"(e.g. torchvision.resnet18); see 'bdscan inspect --list-architectures'"
    )


def build(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    info = lookup(name)
    try:
        model = info.builder(num_classes)
    except Exception as exc:
        raise ArchitectureError(f"architecture {name!r} failed to build: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ArchitectureError(f"architecture {name!r} returned {type(model).__name__}, not a torch.nn.Module")
    adapt_in_channels(model, in_channels)
    return model


def adapt_in_channels(model: nn.Module, in_channels: int) -> None:
    """Replace the first convolution when the model was built for another channel count."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_channels:
                return
            if module.groups != 1:
                raise ArchitectureError(f"cannot adapt grouped first convolution {name!r} to {in_channels} channels")
            new = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                bias=module.bias is not None,
                padding_mode=module.padding_mode,
            )
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, new)
            return


def _ensure_builtins() -> None:
    import bdscan.model.builtin  # noqa: F401  (registers via decorator)
