"""Architecture registry: built-ins, plugins from entry points, and ``module:callable`` one-offs.

A builder is ``build(num_classes: int) -> torch.nn.Module``. Input channels are adapted afterwards by
replacing the first convolution, so builders need not know about greyscale inputs.

Plugins are installed packages with entry points in group ``bdscan.architectures`` (the entry's name is the
architecture name). A package may also claim a whole name prefix through ``bdscan.architecture_families``:
the entry's name is the prefix (``timm``), its object ``resolve(name) -> build | None`` for the rest of the
name (``timm.convnext_nano`` asks for ``convnext_nano``). Built-ins win every clash, so an installed package
cannot swap the network behind a name a model file already uses.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

from torch import nn

from bdscan.errors import ArchitectureError

ENTRY_POINT_GROUP = "bdscan.architectures"
FAMILY_GROUP = "bdscan.architecture_families"
BUILTIN_PREFIXES = ("bdscan", "torchvision")
Builder = Callable[[int], nn.Module]


class PluginWarning(UserWarning):
    """A plugin could not be loaded or clashes with another architecture."""


class _Lazy:
    """An entry point imported on first use: importing timm alone takes seconds, most runs need no plugin."""

    def __init__(self, ep: importlib.metadata.EntryPoint, dist: str):
        self.ep, self.dist = ep, dist
        self._obj: Callable | None = None

    def load(self) -> Callable:
        if self._obj is None:
            try:
                obj = self.ep.load()
            except Exception as exc:  # a broken plugin must not break bdscan
                raise ArchitectureError(
                    f"plugin {self.dist!r} failed to load: importing {self.ep.module!r} raised "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            if not callable(obj):
                raise ArchitectureError(f"plugin {self.dist!r}: {self.ep.value} ({self.ep.name!r}) is not callable")
            self._obj = obj
        return self._obj

    def __call__(self, *args):
        return self.load()(*args)


@dataclass(frozen=True)
class ArchInfo:
    name: str
    source: str  # "bdscan", "torchvision", the plugin's distribution name, or the module of a module:callable
    builder: Builder


@dataclass(frozen=True)
class FamilyInfo:
    prefix: str
    source: str
    resolver: Callable[[str], Builder | None]


@dataclass
class _Table:
    archs: dict[str, ArchInfo]
    families: dict[str, FamilyInfo]


_BUILTINS: dict[str, ArchInfo] = {}
_table: _Table | None = None


def register(name: str, source: str = "bdscan") -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        _BUILTINS[name] = ArchInfo(name, source, fn)
        return fn

    return deco


def _torchvision_builder(name: str) -> Builder:
    def build(num_classes: int) -> nn.Module:
        from torchvision import models

        return models.get_model(name, weights=None, num_classes=num_classes)

    return build


def _builtins() -> dict[str, ArchInfo]:
    import bdscan.model.builtin  # noqa: F401  (registers via decorator)

    return dict(_BUILTINS)


_TORCHVISION: dict[str, ArchInfo] | None = None


def _torchvision_archs() -> dict[str, ArchInfo]:
    """``torchvision.<name>`` for every torchvision classifier. Listed on first need only: importing
    torchvision.models pulls in torch._dynamo (about 3.5 s here), which a run on any other architecture never uses."""
    global _TORCHVISION
    if _TORCHVISION is None:
        from torchvision import models

        _TORCHVISION = {
            f"torchvision.{n}": ArchInfo(f"torchvision.{n}", "torchvision", _torchvision_builder(n))
            for n in sorted(models.list_models(module=models))
        }
    return _TORCHVISION


def _builtin_held(name: str, archs: dict[str, ArchInfo]) -> str | None:
    """Who already provides ``name`` among the built-ins and the plugins read so far, if anyone."""
    if name in archs:
        return archs[name].source
    if name.startswith("torchvision.") and name in _torchvision_archs():
        return "torchvision"
    return None


def _warn(msg: str) -> None:
    warnings.warn(msg, PluginWarning, stacklevel=3)


def _entry_points(group: str) -> list[tuple[importlib.metadata.EntryPoint, str]]:
    """Entry points with their distribution's name, read from metadata only (nothing is imported)."""
    eps = importlib.metadata.entry_points(group=group)
    return [(ep, ep.dist.name if ep.dist is not None else ep.module) for ep in eps]


def _build_table() -> _Table:
    archs = _builtins()
    for ep, dist in _entry_points(ENTRY_POINT_GROUP):
        held = _builtin_held(ep.name, archs)
        if held is not None:
            _warn(f"plugin {dist!r} provides architecture {ep.name!r}, which {held!r} already provides; "
                  f"using the one from {held!r}")
            continue
        archs[ep.name] = ArchInfo(ep.name, dist, _Lazy(ep, dist))
    families: dict[str, FamilyInfo] = {}
    for ep, dist in _entry_points(FAMILY_GROUP):
        prefix = ep.name.rstrip(".")
        held = prefix if prefix in BUILTIN_PREFIXES else families[prefix].source if prefix in families else None
        if held is not None:
            _warn(f"plugin {dist!r} provides architectures '{prefix}.<name>', which {held!r} already provides; "
                  f"using the ones from {held!r}")
            continue
        families[prefix] = FamilyInfo(prefix, dist, _Lazy(ep, dist))
    return _Table(archs, families)


def _tables() -> _Table:
    global _table
    if _table is None:
        _table = _build_table()
    return _table


def reset_plugins() -> None:
    """Forget the merged table (tests install and remove packages); clash warnings fire again on next use."""
    global _table
    _table = None


def available() -> dict[str, ArchInfo]:
    """Every architecture name, built-ins and plugins (plugins are not imported until built)."""
    return {**_torchvision_archs(), **_tables().archs}


def families() -> dict[str, FamilyInfo]:
    """Name prefixes whose architectures a plugin resolves on demand (``timm`` for ``timm.<model>``)."""
    return dict(_tables().families)


def list_architectures() -> list[dict]:
    """Rows for ``inspect --list-architectures``: each plugin is imported so a broken one warns and is left out."""
    said: set[str] = set()

    def loads(lazy) -> bool:
        if not isinstance(lazy, _Lazy):
            return True
        try:
            lazy.load()
            return True
        except ArchitectureError as exc:
            if str(exc) not in said:  # a module that fails to import: one warning, not one per entry in it
                said.add(str(exc))
                _warn(f"{exc}; its architectures are left out")
            return False

    rows = [{"name": n, "source": i.source} for n, i in sorted(available().items()) if loads(i.builder)]
    rows += [{"name": f"{p}.<name>", "source": f.source} for p, f in sorted(families().items()) if loads(f.resolver)]
    return rows


def _resolve_callable(spec: str) -> Builder:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ArchitectureError(f"architecture {spec!r}: expected 'module.path:callable'")
    # a one-off module next to the user's files should import as it would with 'python -m'
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ArchitectureError(
            f"architecture {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ArchitectureError(f"architecture {spec!r}: {module_name!r} has no {attr!r}")
    if not callable(obj):
        raise ArchitectureError(f"architecture {spec!r} is not callable")
    return obj


def _from_family(name: str, table: _Table) -> ArchInfo | None:
    prefix, dot, rest = name.partition(".")
    fam = table.families.get(prefix)
    if not dot or not rest or fam is None:
        return None
    try:
        builder = fam.resolver(rest)
    except ArchitectureError:
        raise
    except Exception as exc:
        raise ArchitectureError(f"architecture {name!r}: plugin {fam.source!r} failed to resolve it: "
                                f"{type(exc).__name__}: {exc}") from None
    if builder is None:
        raise ArchitectureError(f"unknown architecture {name!r}: plugin {fam.source!r} has no {rest!r}")
    if not callable(builder):
        raise ArchitectureError(f"architecture {name!r}: plugin {fam.source!r} resolved it to a non-callable")
    return ArchInfo(name, fam.source, builder)


def lookup(name: str, allow_code: bool = True) -> ArchInfo:
    """The architecture called ``name``.

    ``allow_code=False`` refuses ``module:callable``: a model file's metadata must not choose code to import.
    """
    if ":" in name:
        if not allow_code:
            raise ArchitectureError(
                f"the file names architecture {name!r}, which is code to import; bdscan imports code only when "
                f"you ask: pass --arch {name} if you trust it"
            )
        return ArchInfo(name, name.partition(":")[0], _resolve_callable(name))
    table = _tables()
    if name in table.archs:
        return table.archs[name]
    found = _torchvision_archs().get(name) if name.startswith("torchvision.") else None
    found = found or _from_family(name, table)
    if found is not None:
        return found
    # a bare torchvision name is a common slip: accept it
    found = _torchvision_archs().get(f"torchvision.{name}")
    if found is not None:
        return found
    custom = sorted(n for n in table.archs if not n.startswith("torchvision."))
    patterns = ["torchvision.<name>"] + [f"{p}.<name>" for p in sorted(table.families)]
    raise ArchitectureError(
        f"unknown architecture {name!r}; known: {', '.join(custom)} and {', '.join(patterns)} "
        f"(e.g. torchvision.resnet18), or module.path:callable; see 'bdscan inspect --list-architectures'"
    )


def build(name: str, num_classes: int, in_channels: int = 3, allow_code: bool = True) -> nn.Module:
    info = lookup(name, allow_code)
    try:
        model = info.builder(num_classes)
    except ArchitectureError:
        raise
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
