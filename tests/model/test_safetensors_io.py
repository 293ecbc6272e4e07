import json

import pytest
import torch

from bdscan.errors import ArchitectureError, ModelLoadError
from bdscan.model import load_model, write_model
from bdscan.model.safetensors_io import dump_state
from tests.conftest import make_model_file


@pytest.mark.parametrize("arch,shape", [("bdscan.small_cnn", (1, 28, 28)), ("torchvision.resnet18", (3, 32, 32))])
def test_round_trip_outputs_equal(tmp_path, arch, shape):
    path, model, spec = make_model_file(tmp_path, arch, shape)
    loaded = load_model(path)
    assert loaded.spec.architecture == arch
    assert loaded.spec.input_shape == shape
    assert loaded.spec.num_classes == 10
    x = torch.rand(5, *shape)
    with torch.no_grad():
        diff = (loaded.module(x) - model(x)).abs().max().item()
    assert diff <= 1e-5
    # statistics really came from the file (perturbed, not defaults)
    bn = [m for m in loaded.module.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_greyscale_resnet_gets_adapted_first_conv(tmp_path):
    path, model, _ = make_model_file(tmp_path, "torchvision.resnet18", (1, 32, 32))
    loaded = load_model(path)
    assert loaded.module.conv1.in_channels == 1


def _bare_file(tmp_path, model, meta=None, name="bare.safetensors"):
    path = tmp_path / name
    path.write_bytes(dump_state(model.state_dict(), meta or {}))
    return path


def test_architecture_from_arch_flag(tmp_path):
    _, model, _ = make_model_file(tmp_path, "bdscan.small_cnn")
    path = _bare_file(tmp_path, model, {"num_classes": "10", "input_size": "1,28,28"})
    with pytest.raises(ModelLoadError, match="no architecture given"):
        load_model(path)
    loaded = load_model(path, arch="bdscan.small_cnn")
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(loaded.module(x), model(x), atol=1e-5)


def test_architecture_from_config_json(tmp_path):
    _, model, _ = make_model_file(tmp_path, "bdscan.small_cnn")
    sub = tmp_path / "hub"
    sub.mkdir()
    path = _bare_file(sub, model, name="model.safetensors")
    (sub / "config.json").write_text(json.dumps({
        "architecture": "bdscan.small_cnn", "num_classes": 10,
        "pretrained_cfg": {"input_size": [1, 28, 28], "mean": [0.5], "std": [0.25]},
        "label_names": [f"c{i}" for i in range(10)],
    }))
    loaded = load_model(path)
    assert loaded.spec.input_shape == (1, 28, 28)
    assert loaded.spec.mean == (0.5,) and loaded.spec.std == (0.25,)
    assert loaded.spec.labels[3] == "c3"


def test_unknown_architecture_lists_known(tmp_path):
    _, model, _ = make_model_file(tmp_path, "bdscan.small_cnn")
    path = _bare_file(tmp_path, model, {"architecture": "nope.net", "num_classes": "10", "input_size": "1,28,28"})
    with pytest.raises(ArchitectureError, match="unknown architecture 'nope.net'.*bdscan.small_cnn"):
        load_model(path)


def test_metadata_written_with_provenance(tmp_path):
    path, model, spec = make_model_file(tmp_path, "bdscan.small_cnn", labels=tuple("abcdefghij"))
    out = tmp_path / "copy.safetensors"
    write_model(model, spec, "safetensors", out, {"bdscan_version": "x", "source_sha256": "y"}, torch.rand(1, 1, 28, 28))
    loaded = load_model(out)
    assert loaded.metadata["source_sha256"] == "y"
    assert loaded.metadata["architecture"] == "bdscan.small_cnn"
    assert json.loads(loaded.metadata["labels"])[0] == "a"
    assert loaded.spec.labels == tuple("abcdefghij")


def test_head_mismatch_names_num_classes(tmp_path):
    _, model, _ = make_model_file(tmp_path, "bdscan.small_cnn")
    path = _bare_file(tmp_path, model, {"architecture": "bdscan.small_cnn", "num_classes": "7", "input_size": "1,28,28"})
    with pytest.raises(ModelLoadError, match="num_classes is 7 in the metadata but the head"):
        load_model(path)
