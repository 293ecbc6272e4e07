"""ONNX in (onnx2torch, trainable) and out (TorchScript exporter), with an onnxruntime parity check."""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bdscan.errors import ExportError, ModelLoadError
from bdscan.fileio import atomic_write_bytes, sha256_file
from bdscan.model.spec import ModelSpec, spec_from_mapping

EXPORT_OPSET = 17  # onnx2torch 1.5 converts up to here; dynamo exports (18+) do not convert
PARITY_TOLERANCE = 1e-4
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_REEXPORT_HINT = (
    "re-export with torch.onnx.export(..., dynamo=False, opset_version=17, do_constant_folding=False)"
)


def _read(path: Path):
    import onnx
    from onnx import external_data_helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"{path.name}: not a readable ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise ModelLoadError(f"{path.name}: not an ONNX model (empty graph)")
    base = path.parent.resolve()
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        target = (base / info.get("location", "")).resolve()
        if base not in target.parents:
            raise ModelLoadError(
                f"{path.name}: external data of {tensor.name!r} points outside the model's folder "
                f"({info.get('location')!r}); refused"
            )
        if not target.is_file():
            raise ModelLoadError(f"{path.name}: external data file {info.get('location')!r} is missing")
    try:
        external_data_helper.load_external_data_for_model(model, str(base))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelLoadError(f"{path.name}: invalid ONNX model: {_first_line(exc)}") from None
    return model


def inline_identity_initializers(model) -> None:
    """Give each Identity-of-initializer its own copy of the tensor.

    The TorchScript exporter de-duplicates equal initializers (fresh BatchNorm scales, zero biases) into
    Identity nodes; onnx2torch then cannot build real BatchNorm layers from them.
    """
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
        else:
            keep.append(node)
    if len(keep) == len(model.graph.node):
        return
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _input_shape(model, name: str) -> tuple[int, int, int]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelLoadError(f"{name}: expected one image input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ModelLoadError(f"{name}: input {inputs[0].name!r} has {len(dims)} dimensions; expected NCHW")
    c, h, w = (d.dim_value if d.HasField("dim_value") else 0 for d in dims[1:])
    if c not in (1, 3, 4):
        raise ModelLoadError(f"{name}: input {inputs[0].name!r} has no fixed channel count (1, 3 or 4)")
    if h <= 0 or w <= 0:
        raise ModelLoadError(f"{name}: input {inputs[0].name!r} has no fixed height and width")
    from bdscan.model.loader import MAX_INPUT_SIDE

    if h > MAX_INPUT_SIDE or w > MAX_INPUT_SIDE:  # checked before a probe input of that size is allocated
        raise ModelLoadError(f"{name}: input size {h}x{w} is too large (at most {MAX_INPUT_SIDE} per side)")
    return c, h, w


def _convert(model, name: str, opset: int) -> nn.Module:
    from onnx2torch import convert

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = convert(model)
    except NotImplementedError as exc:
        m = re.search(r"operation_type='([^']+)', version=(\d+)", str(exc))
        what = f"operator {m.group(1)} (opset {m.group(2)})" if m else _first_line(exc)
        if opset > EXPORT_OPSET:
            raise ModelLoadError(f"{name}: cannot convert {what} to torch; dynamo exports (opset 18+) are not "
                                 f"supported, {_REEXPORT_HINT}") from None
        raise ModelLoadError(f"{name}: cannot convert {what} to torch: onnx2torch does not support it") from None
    except Exception as exc:
        raise ModelLoadError(
            f"{name}: cannot convert the graph to torch: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    _buffers_to_parameters(module)
    return module.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _buffers_to_parameters(module: nn.Module) -> None:
    """Initializers that onnx2torch keeps as buffers (weights of Mul/Add/MatMul) must train too."""
    for mod in module.modules():
        for bname, buf in list(mod.named_buffers(recurse=False)):
            if buf is None or not buf.is_floating_point() or bname in _BN_BUFFERS or buf.dim() == 0:
                continue
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                continue
            del mod._buffers[bname]
            mod.register_parameter(bname, nn.Parameter(buf.detach().clone()))


def load_onnx(path: Path):
    from bdscan.model.loader import LoadedModel

    model = _read(path)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    c, h, w = _input_shape(model, path.name)
    props = {p.key: p.value for p in model.metadata_props}
    inline_identity_initializers(model)
    module = _convert(model, path.name, opset)
    with torch.no_grad():
        try:
            out = module(torch.rand(2, c, h, w))
        except Exception as exc:
            raise ModelLoadError(
                f"{path.name}: converted graph fails on a {c}x{h}x{w} input: {_first_line(exc)}"
            ) from None
    if out.dim() != 2:
        raise ModelLoadError(f"{path.name}: output has shape {tuple(out.shape)}; expected (batch, classes)")
    mapping = {k: v for k, v in props.items() if k in ("mean", "std", "labels")}
    mapping.update(num_classes=out.shape[1], input_size=f"{c},{h},{w}")
    spec = spec_from_mapping(mapping, architecture="onnx", fmt="onnx", source=path.name)
    if opset > EXPORT_OPSET:
        warnings.warn(f"{path.name}: opset {opset} converted; re-exports use opset {EXPORT_OPSET}")
    return LoadedModel(module, spec, path, sha256_file(path), props)


def export_bytes(module: nn.Module, spec: ModelSpec, metadata: dict[str, str]) -> bytes:
    import onnx

    module = module.eval()
    example = torch.zeros(1, *spec.input_shape, device=next(module.parameters()).device)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, (example,), buf, dynamo=False, opset_version=EXPORT_OPSET, do_constant_folding=False,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception as exc:
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {_first_line(exc)}") from None
    model = onnx.load_from_string(buf.getvalue())
    inline_identity_initializers(model)
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model.SerializeToString()


def ort_session(data: bytes, device: str = "cpu"):
    import onnxruntime as ort

    want = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    providers = [p for p in want if p in ort.get_available_providers()]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=opts, providers=providers)


def parity(module: nn.Module, data: bytes, inputs: torch.Tensor, device: str = "cpu") -> tuple[float, str]:
    """Largest absolute difference between torch and onnxruntime on ``inputs``, and the provider used."""
    sess = ort_session(data, device)
    dev = next(module.parameters()).device
    with torch.no_grad():
        ref = module.eval()(inputs.to(dev)).float().cpu().numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: inputs.cpu().numpy().astype(np.float32)})[0]
    return float(np.abs(ref - got).max()), sess.get_providers()[0]


def tolerance(reference_scale: float) -> float:
    """1e-4, loosened for models whose logits are large: float32 keeps about 7 significant digits."""
    return max(PARITY_TOLERANCE, 2e-6 * reference_scale)


def export_onnx(
    module: nn.Module, spec: ModelSpec, target: Path, inputs: torch.Tensor, metadata: dict[str, str],
    device: str = "cpu",
) -> tuple[float, str]:
    """Export, check against onnxruntime, then write atomically. Returns (max difference, provider)."""
    data = export_bytes(module, spec, metadata)
    diff, provider = parity(module, data, inputs, device)
    with torch.no_grad():
        scale = float(module.eval()(inputs.to(next(module.parameters()).device)).abs().max())
    limit = tolerance(scale)
    if not diff <= limit:
        raise ExportError(f"ONNX export differs from torch by {diff:.3g} (> {limit:g}); not written")
    atomic_write_bytes(target, data)
    return diff, provider


def metadata_json(values: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
