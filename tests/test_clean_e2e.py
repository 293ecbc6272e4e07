"""The whole `bdscan clean` command on the bundled BadNets example, measured on held-back test images."""

import json

import pytest
import torch
from typer.testing import CliRunner

from bdscan.cli.app import app
from bdscan.fileio import sha256_file
from bdscan.lab.zoo import load_attack, load_npz
from bdscan.model import load_model
from bdscan.model.onnx_io import parity
from tests.conftest import EXAMPLES, measure_example, write_trigger_samples

MODEL = EXAMPLES / "models" / "badnets-cnn.safetensors"
SAMPLES = EXAMPLES / "samples"


@pytest.mark.slow
def test_clean_removes_bundled_backdoor(tmp_path):
    before_sha = sha256_file(MODEL)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["clean", str(MODEL), "--samples", str(SAMPLES), "--target-class", "0",
                                 "--out", str(out), "--format", "json", "--seed", "0"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "removed"
    assert any("synthesised" in w for w in doc["warnings"]), "a target-known verdict must say what it measured"
    assert "blend" not in doc["trigger"]["kind"], "no blend stands out toward a patch backdoor's target"
    searched = doc["trigger"]["blend_search"]  # the report says what the search found all the same
    assert not searched["joined"] and searched["anomaly"] <= searched["threshold"] and 0 < searched["ratio"] <= 1
    assert sha256_file(MODEL) == before_sha, "the input must never change"
    assert sorted(p.name for p in out.iterdir()) == [
        "badnets-cnn.onnx", "badnets-cnn.safetensors", "report.html", "report.json", "report.md"]
    assert json.loads((out / "report.json").read_text())["verdict"] == "removed"

    cleaned = load_model(out / "badnets-cnn.safetensors")
    assert cleaned.metadata["source_sha256"] == before_sha and cleaned.metadata["bdscan_cleaned"] == "true"
    x, _ = load_npz(EXAMPLES / "holdout.npz")
    ref, res = measure_example(out / "badnets-cnn.safetensors")
    assert ref["asr"] > 0.9, "the example must be backdoored to begin with"
    assert res["asr"] <= 0.02, f"attack success after cleaning {res['asr']:.2%}"
    assert res["ca"] >= ref["ca"] - 0.01, f"clean accuracy {ref['ca']:.2%} -> {res['ca']:.2%}"

    # the ONNX export is the same model
    onnx_model = load_model(out / "badnets-cnn.onnx")
    with torch.no_grad():
        diff = (onnx_model.module(x[:64]) - cleaned.module(x[:64])).abs().max().item()
    assert diff <= 1e-4
    data = (out / "badnets-cnn.onnx").read_bytes()
    assert parity(cleaned.module, data, x[:64])[0] <= 1e-4
    onnx_out = [o for o in doc["outputs"] if o["format"] == "onnx"][0]
    assert onnx_out["onnx_max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_clean_without_target_detects_and_keeps_target_class(tmp_path):
    """No target, no trigger images: detection finds the target and its synthesised trigger is unlearned,
    not the class itself."""
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["clean", str(MODEL), "--samples", str(SAMPLES), "--out", str(out),
                                 "--format", "json", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["mode"] == "detected" and doc["target_class"] == 0 and doc["detection"]["suspected"]
    _, res = measure_example(out / "badnets-cnn.safetensors")
    assert res["asr"] <= 0.02, f"attack success after cleaning {res['asr']:.2%}"
    x, y = load_npz(EXAMPLES / "holdout.npz")
    target = y == 0
    ref_t, res_t = (r["ca"] for r in measure_example(out / "badnets-cnn.safetensors", x[target], y[target]))
    assert res_t >= ref_t - 0.03, f"target-class accuracy {ref_t:.2%} -> {res_t:.2%}"


@pytest.mark.slow
def test_clean_with_real_trigger_images_removes_backdoor(tmp_path):
    """BDK: the user's own triggered images (30 hold-out images, kept out of the measure) pick the target and
    check the edit; the backdoor goes while clean accuracy holds."""
    from bdscan.data import save_image

    original = load_model(MODEL)
    attack = load_attack(MODEL, original.spec)
    x, y = load_npz(EXAMPLES / "holdout.npz")
    pool = torch.nonzero(y != attack.target).flatten()[:30]
    for i in pool.tolist():
        (tmp_path / "trigger" / str(int(y[i]))).mkdir(parents=True, exist_ok=True)
        save_image(attack.apply(x[i:i + 1])[0], tmp_path / "trigger" / str(int(y[i])) / f"h{i:04d}.png")
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[pool] = False
    x, y = x[keep], y[keep]

    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["clean", str(MODEL), "--samples", str(SAMPLES), "--trigger-samples",
                                 str(tmp_path / "trigger"), "--out", str(out), "--format", "json", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["mode"] == "bdk" and doc["target_class"] == 0 and doc["verdict"] == "removed"
    assert not any("synthesised" in w for w in doc["warnings"]), "real trigger images back this verdict"
    ref, res = measure_example(out / "badnets-cnn.safetensors", x, y)
    assert res["asr"] <= 0.02, f"attack success after cleaning {res['asr']:.2%}"
    assert res["ca"] >= ref["ca"] - 0.01, f"clean accuracy {ref['ca']:.2%} -> {res['ca']:.2%}"


@pytest.mark.slow
def test_run_writing_no_model_removes_earlier_model_from_out(tmp_path):
    """--force replaces earlier outputs: when a later run ends "not removed", the earlier run's cleaned model
    must not stay beside the new report, where it would read as this run's result."""
    from dataclasses import replace

    from bdscan.outputs import write_clean_outputs
    from bdscan.pipeline import clean
    from bdscan.settings import CleanSettings

    # real trigger images: a removed outcome without the target-known blend search's cost
    trig = write_trigger_samples(tmp_path / "trigger")
    outcome = clean(MODEL, SAMPLES, CleanSettings(trigger_samples=trig, device="cpu"))
    assert outcome.removed
    out = tmp_path / "out"
    write_clean_outputs(outcome, out)
    assert (out / "badnets-cnn.safetensors").is_file() and (out / "badnets-cnn.onnx").is_file()
    (out / "notes.txt").write_text("mine")  # not a bdscan output: left alone

    doc = write_clean_outputs(replace(outcome, removed=False), out)
    assert doc["verdict"] == "not_removed"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.html", "report.json", "report.md"]
    assert any("earlier run's model" in w for w in doc["warnings"])
    assert json.loads((out / "report.json").read_text())["verdict"] == "not_removed"


def test_clean_reads_detection_settings_from_the_settings_file(tmp_path, monkeypatch):
    """clean's detection (no --target-class) takes 'threshold', 'searches' and 'reference' from [tool.bdscan], as
    scan does."""
    from bdscan.errors import ExitCode
    from tests.conftest import make_model_file, write_samples

    # 16x16 inputs: six detections run here, and the settings, not the searches, are under test
    path, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", shape=(1, 16, 16), classes=3)
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    monkeypatch.chdir(tmp_path)
    ref, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", shape=(1, 16, 16), classes=3, name="release", seed=1)
    (tmp_path / ".bdscan.toml").write_text('threshold = 1e9\nsearches = 2\nreference = "release.safetensors"\n')
    r = CliRunner().invoke(app, ["clean", path.name, "--samples", "s", "--out", "out", "--format", "json", "--quiet"])
    assert r.exit_code == ExitCode.OK, r.output
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "no_backdoor_found" and doc["detection"]["threshold"] == 1e9
    assert [s["seed"] for s in doc["detection"]["searches"]] == [0, 1]
    assert doc["detection"]["reference"]["path"] == "release.safetensors"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written
    r = CliRunner().invoke(app, ["clean", path.name, "--samples", "s", "--out", "out", "--quiet", "--searches", "1"])
    assert r.exit_code == ExitCode.OK and "scored against the reference model release.safetensors" in r.stdout
    (tmp_path / ".bdscan.toml").write_text('threshold = "high"\n')
    r = CliRunner().invoke(app, ["clean", path.name, "--samples", "s", "--out", "out", "--quiet"])
    assert r.exit_code == ExitCode.USAGE and "threshold must be a number, not 'high'" in r.output
