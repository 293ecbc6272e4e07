import warnings

import onnx
import pytest
import torch

from bdscan.errors import ModelLoadError
from bdscan.model import load_model, write_model
from bdscan.model.onnx_io import export_bytes, parity
from tests.conftest import make_model_file


@pytest.mark.parametrize("arch,shape", [("bdscan.small_cnn", (1, 28, 28)), ("torchvision.resnet18", (3, 32, 32))])
def test_onnx_round_trip_is_trainable_and_equal(tmp_path, arch, shape):
    path, model, spec = make_model_file(tmp_path, arch, shape, fmt="onnx")
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 17
    assert {"batch"} <= {d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim}
    loaded = load_model(path)
    assert loaded.spec.format == "onnx" and loaded.spec.input_shape == shape and loaded.spec.num_classes == 10
    x = torch.rand(6, *shape)
    with torch.no_grad():
        assert (loaded.module(x) - model(x)).abs().max().item() <= 1e-5
    # real BatchNorm layers with the file's statistics, and every weight trainable
    bns = [m for m in loaded.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    n_params = sum(p.numel() for p in loaded.module.parameters())
    assert n_params == sum(p.numel() for p in model.parameters())
    # export again from the converted module: onnxruntime agrees
    data = export_bytes(loaded.module, loaded.spec, {})
    diff, provider = parity(loaded.module, data, x)
    assert diff <= 1e-4 and provider == "CPUExecutionProvider"


def test_safetensors_to_onnx_metadata(tmp_path):
    path, model, spec = make_model_file(tmp_path, "bdscan.small_cnn", labels=tuple("abcdefghij"))
    out = tmp_path / "m.onnx"
    info = write_model(model, spec.with_(format="onnx"), "onnx", out, {"source_sha256": "abc"}, torch.rand(3, 1, 28, 28))
    assert info["max_abs_diff"] <= 1e-4
    loaded = load_model(out)
    assert loaded.metadata["source_sha256"] == "abc"
    assert loaded.spec.labels == tuple("abcdefghij")


def test_dynamo_export_gets_clear_error(tmp_path):
    from bdscan.model.registry import build

    model = build("bdscan.small_cnn", 10, 1).eval()
    path = tmp_path / "dynamo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 1, 28, 28),), str(path), dynamo=True, external_data=False)
    with pytest.raises(ModelLoadError, match=r"cannot convert operator \w+ \(opset \d+\).*dynamo exports"):
        load_model(path)


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        load_model(path)
