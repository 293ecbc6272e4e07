import json

from typer.testing import CliRunner

from bdscan.cli.app import app
from bdscan.errors import ExitCode
from bdscan.model import load_model

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_inspect_json_is_only_json(cnn_file):
    path, model, spec = cnn_file
    r = invoke("inspect", path, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["spec"]["architecture"] == "bdscan.small_cnn"
    assert doc["spec"]["input_shape"] == [1, 28, 28]
    assert doc["parameters"] == sum(p.numel() for p in model.parameters())
    assert any(layer["name"] == "classifier.3" for layer in doc["layers"])


def test_inspect_text(cnn_file):
    r = invoke("inspect", cnn_file[0])
    assert r.exit_code == 0, r.output
    assert "bdscan.small_cnn" in r.stdout and "1x28x28" in r.stdout


def test_exit_codes(tmp_path, cnn_file):
    r = invoke("inspect", tmp_path / "missing.safetensors")
    assert r.exit_code == ExitCode.RUNTIME, r.output
    assert "no such file" in r.output
    r = invoke("inspect", cnn_file[0], "--arch", "no.such")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert r.output.count("\n") == 1 and "unknown architecture" in r.output
    r = invoke("inspect", "--no-such-flag")
    assert r.exit_code == ExitCode.USAGE
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"\x80\x04K\x01.")
    r = invoke("inspect", pt)
    assert r.exit_code == ExitCode.NOTHING_SCANNED and "pickle" in r.output and "safetensors" in r.output


def test_export_both_ways(tmp_path, cnn_file):
    path, model, spec = cnn_file
    onnx_path = tmp_path / "out.onnx"
    r = invoke("export", path, "--to", "onnx", "--out", onnx_path)
    assert r.exit_code == 0, r.output
    assert "parity" in r.output
    back = load_model(onnx_path)
    assert back.spec.num_classes == 10
    r = invoke("export", onnx_path, "--to", "safetensors", "--out", tmp_path / "x.safetensors")
    assert r.exit_code == ExitCode.RUNTIME and "no architecture" in r.output
    r = invoke("export", path, "--to", "safetensors", "--out", path)
    assert r.exit_code != 0 and "is the input" in r.output


def test_version():
    import bdscan

    r = invoke("--version")
    assert r.exit_code == 0 and bdscan.__version__ in r.stdout
