"""Load any supported model file into a torch module plus its ModelSpec."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bdscan.errors import ArchitectureError, ModelLoadError, UnsupportedModelError
from bdscan.fileio import sha256_file
from bdscan.model import registry
from bdscan.model.spec import ModelSpec, spec_from_mapping

SAFETENSORS_SUFFIXES = {".safetensors"}
ONNX_SUFFIXES = {".onnx"}
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}
SUPPORTED_SUFFIXES = SAFETENSORS_SUFFIXES | ONNX_SUFFIXES
MAX_INPUT_SIDE = 4096  # a file may declare any input size; larger ones would exhaust memory, not classify


@dataclass
class LoadedModel:
    module: nn.Module
    spec: ModelSpec
    path: Path
    sha256: str
    metadata: dict[str, str]


def model_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in PICKLE_SUFFIXES:
        raise UnsupportedModelError(
            f"{path.name}: pickle checkpoints are refused (unpickling runs code from the file); convert it "
            "where you trust it with safetensors.torch.save_file(model.state_dict(), 'model.safetensors') "
            "and pass --arch"
        )
    raise UnsupportedModelError(f"{path.name}: unsupported model format {suffix or '(no suffix)'}; "
                                "bdscan reads .safetensors and .onnx")


def _config_json(path: Path) -> dict | None:
    cfg_path = path.parent / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{cfg_path}: not a JSON object")
    flat = dict(cfg.get("pretrained_cfg") or {})
    flat.update({k: v for k, v in cfg.items() if k != "pretrained_cfg"})
    return flat


def load_safetensors(path: Path, arch: str | None = None) -> LoadedModel:
    from bdscan.model.safetensors_io import load_state

    state, meta = load_state(path)
    source = path.name
    mapping: dict = dict(meta)
    if not meta.get("architecture") or not meta.get("num_classes") or not meta.get("input_size"):
        cfg = _config_json(path)
        if cfg is not None:
            mapping = {**cfg, **{k: v for k, v in meta.items() if v}}
            source = f"{path.name} (+ config.json)"
    spec = spec_from_mapping(mapping, architecture=arch, fmt="safetensors", source=source)
    check_input_size(spec, path.name)
    # module:callable only from --arch: a file's metadata must not pick code to import
    allow_code = arch is not None
    _check_shapes_first(state, path.name, spec, allow_code)
    module = registry.build(spec.architecture, spec.num_classes, spec.channels, allow_code=allow_code)
    _load_into(module, state, path.name, spec)
    module.eval()
    return LoadedModel(module, spec, path, sha256_file(path), dict(meta))


def check_input_size(spec: ModelSpec, name: str) -> None:
    _, h, w = spec.input_shape
    if h > MAX_INPUT_SIDE or w > MAX_INPUT_SIDE:
        raise ModelLoadError(f"{name}: input size {h}x{w} is too large (at most {MAX_INPUT_SIDE} per side)")


def _check_shapes_first(state: dict[str, torch.Tensor], name: str, spec: ModelSpec, allow_code: bool) -> None:
    """Match the file against the architecture before allocating it: metadata claiming 2**34 classes must
    give an error, not a 64 TB allocation. The skeleton lives on the meta device (no memory)."""
    try:
        info = registry.lookup(spec.architecture, allow_code)  # unknown or refused names fail here
    except ArchitectureError as exc:
        if allow_code:  # the name came from --arch, not from the file
            raise
        raise ArchitectureError(f"{name}: {exc}") from None
    try:
        with torch.device("meta"):
            skeleton = info.builder(spec.num_classes)
            registry.adapt_in_channels(skeleton, spec.channels)
    except Exception:  # a builder that reads tensor values while building; fall back to a bound
        weights = sum(t.numel() for t in state.values())
        if spec.num_classes > weights:  # the head alone holds num_classes weights
            raise ModelLoadError(f"{name}: num_classes is {spec.num_classes} in the metadata but the file holds "
                                 f"only {weights} weights") from None
        return
    if isinstance(skeleton, nn.Module):  # anything else: the real build says what is wrong
        _check_state(skeleton, state, name, spec)


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], name: str, spec: ModelSpec) -> None:
    _check_state(module, state, name, spec)
    expected = module.state_dict()
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def _check_state(module: nn.Module, state: dict[str, torch.Tensor], name: str, spec: ModelSpec) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[0]!r}")
        if extra:
            parts.append(f"{len(extra)} unexpected tensor(s) e.g. {extra[0]!r}")
        raise ModelLoadError(
            f"{name}: weights do not match architecture {spec.architecture!r}: {'; '.join(parts)}"
        )
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            got = tuple(state[key].shape)
            if ref.dim() >= 1 and got[:1] != tuple(ref.shape[:1]) and key == _head_key(module, expected):
                raise ModelLoadError(
                    f"{name}: num_classes is {spec.num_classes} in the metadata but the head {key!r} has "
                    f"{got[0]} outputs"
                )
            raise ModelLoadError(f"{name}: tensor {key!r} has shape {got}, architecture expects {tuple(ref.shape)}")


def _head_key(module: nn.Module, expected: dict) -> str | None:
    last = None
    for mod_name, mod in module.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            last = mod_name
    return f"{last}.weight" if last else None


def load_model(path: str | Path, arch: str | None = None, mean=None, std=None) -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not a model file")
    fmt = model_format(path)
    if fmt == "safetensors":
        loaded = load_safetensors(path, arch)
    else:
        from bdscan.model.onnx_io import load_onnx

        loaded = load_onnx(path)
    if mean is not None or std is not None:
        c = loaded.spec.channels
        loaded.spec = loaded.spec.with_(
            mean=_per_channel(mean, c) if mean is not None else loaded.spec.mean,
            std=_per_channel(std, c) if std is not None else loaded.spec.std,
        )
    return loaded


def _per_channel(values, channels: int) -> tuple[float, ...]:
    vals = tuple(float(v) for v in values)
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ModelLoadError(f"{len(vals)} mean/std values for a {channels}-channel model")
    return vals
