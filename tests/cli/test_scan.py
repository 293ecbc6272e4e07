"""bdscan scan: verdicts on the bundled models, exit codes, SARIF, settings files, the pre-commit hook."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from bdscan.cli.app import app
from bdscan.errors import ExitCode
from tests.conftest import EXAMPLES, ROOT, make_model_file, write_samples

runner = CliRunner()
BAD = EXAMPLES / "models" / "badnets-cnn.safetensors"
CLEAN = EXAMPLES / "models" / "clean-cnn.safetensors"
SAMPLES = EXAMPLES / "samples"
SCHEMA = json.loads((ROOT / "tests" / "assets" / "sarif-2.1.0.schema.json").read_text())


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def scan_doc(tmp_path_factory):
    """One real scan of the bundled backdoored and clean models (the slow part, shared)."""
    out = tmp_path_factory.mktemp("scan") / "scan.json"
    r = invoke("scan", BAD, CLEAN, "--samples", SAMPLES, "--format", "json", "-o", out, "--quiet")
    return r, json.loads(out.read_text())


@pytest.mark.slow
def test_verdicts_on_bundled_models(scan_doc):
    r, doc = scan_doc
    assert r.exit_code == ExitCode.FOUND, r.output
    by_name = {Path(m["path"]).name: m for m in doc["models"]}
    bad, clean = by_name["badnets-cnn.safetensors"], by_name["clean-cnn.safetensors"]
    assert bad["suspected"] and bad["target_class"] == 0 and bad["score"] > bad["threshold"]
    assert not clean["suspected"] and clean["target_class"] is None and clean["score"] <= clean["threshold"]
    assert doc["summary"] == {"scanned": 2, "suspected": 1, "clean": 1, "errors": 0, "skipped": 0,
                              "accepted": 0}
    assert set(doc) >= {"summary", "models", "errors", "skipped"}
    # review evidence: the real backdoor's trigger drives the head past the clean range more than any other route
    excess = {int(k): v for k, v in bad["evidence"]["activation_excess"].items()}
    assert max(excess, key=excess.get) == 0 and excess[0] > 0.018
    assert set(clean["evidence"]["activation_excess"]) == {str(k) for k in range(10)}


@pytest.mark.slow
def test_sarif_validates_against_schema(scan_doc, tmp_path):
    _, doc = scan_doc
    (tmp_path / "scan.json").write_text(json.dumps(doc))
    r = invoke("report", tmp_path / "scan.json", "--format", "sarif", "-o", tmp_path / "scan.sarif")
    assert r.exit_code == 0, r.output
    sarif = json.loads((tmp_path / "scan.sarif").read_text())
    jsonschema.validate(sarif, SCHEMA)
    results = sarif["runs"][0]["results"]
    assert [res["ruleId"] for res in results] == ["BDSCAN001"]
    assert results[0]["level"] == "error"
    assert results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("badnets-cnn.safetensors")


def test_sarif_of_errors_validates(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    r = invoke("scan", broken, "--samples", tmp_path / "s", "--format", "sarif", "--quiet")
    assert r.exit_code == ExitCode.RUNTIME, r.output
    sarif = json.loads(r.stdout)
    jsonschema.validate(sarif, SCHEMA)
    assert [res["ruleId"] for res in sarif["runs"][0]["results"]] == ["BDSCAN002"]


def test_nothing_scanned_is_never_clean(tmp_path):
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04K\x01.")
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    r = invoke("scan", pt, "--samples", tmp_path / "s", "--format", "json", "--quiet")
    assert r.exit_code == ExitCode.NOTHING_SCANNED, r.output
    doc = json.loads(r.stdout)
    assert doc["summary"]["scanned"] == 0 and doc["skipped"][0]["path"] == str(pt)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = invoke("scan", empty, "--samples", tmp_path / "s", "--quiet")
    assert r.exit_code == ExitCode.NOTHING_SCANNED, r.output


def test_usage_errors(tmp_path, cnn_file):
    r = invoke("scan", cnn_file[0])
    assert r.exit_code == ExitCode.USAGE and "--samples" in r.output
    r = invoke("scan", "--samples", tmp_path)
    assert r.exit_code == ExitCode.USAGE
    r = invoke("scan", cnn_file[0], "--samples", tmp_path, "--format", "pdf")
    assert r.exit_code == ExitCode.USAGE
    for cmd in ("scan", "clean"):  # as the settings file's seed: a negative one is refused, not wrapped
        r = invoke(cmd, cnn_file[0], "--samples", tmp_path, "--seed", "-1")
        assert r.exit_code == ExitCode.USAGE and "--seed" in r.output, r.output


def test_settings_file_gives_defaults_and_flags_win(tmp_path, monkeypatch):
    path, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", shape=(1, 16, 16), classes=3)
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.bdscan]\nsamples = "s"\nformat = "json"\nthreshold = 1e9\n')
    r = invoke("scan", path.name, "--quiet")
    assert r.exit_code == ExitCode.OK, r.output
    doc = json.loads(r.stdout)
    assert doc["models"][0]["threshold"] == 1e9
    r = invoke("scan", path.name, "--quiet", "--format", "markdown", "--threshold", "-1e9")
    assert r.exit_code == ExitCode.FOUND, r.output
    assert r.stdout.startswith("## bdscan scan")
    (tmp_path / ".bdscan.toml").write_text('bogus = 1\n')
    r = invoke("scan", path.name)
    assert r.exit_code == ExitCode.USAGE and "unknown setting 'bogus'" in r.output


@pytest.mark.parametrize("line, says", [
    ('format = "xml"', "format must be one of text, json, markdown, html, sarif, not 'xml'"),
    ('seed = "a"', "seed must be a whole number of at least 0, not 'a'"),
    ("seed = -1", "seed must be a whole number of at least 0, not -1"),
    ("samples = 3", "samples must be a path, not 3"),
    ("accepted = 1", "accepted must be a path, not 1"),
    ('fail_on_detection = "no"', "fail_on_detection must be true or false, not 'no'"),  # not taken as true
    ("threshold = true", "threshold must be a number, not True"),
    ('alphas = ["a"]', "alphas must be a non-empty list of numbers, not ['a']"),
    ("lambdas = []", "lambdas must be a non-empty list of numbers, not []"),
    ("device = 3", "device must be a device name (auto, cpu, cuda, cuda:N), not 3"),
    ("arch = 5", "arch must be an architecture name, not 5"),
])
def test_a_setting_of_the_wrong_type_is_one_usage_error(tmp_path, monkeypatch, line, says):
    """Each setting's type is checked when the file is read: one line naming the file and the setting, exit 4, and
    nothing scanned (no traceback from int() or a path of a number; no string taken as a boolean)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(f"[tool.bdscan]\n{line}\n")
    r = invoke("scan", "missing.safetensors", "--samples", "s")
    assert r.exit_code == ExitCode.USAGE, r.output
    assert r.output.strip() == f"bdscan: error: {tmp_path / 'pyproject.toml'}: {says}"


def test_searches_from_settings_and_flags(tmp_path, monkeypatch):
    path, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", shape=(1, 16, 16), classes=3)
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    monkeypatch.chdir(tmp_path)
    base = ("scan", path.name, "--samples", "s", "--format", "json", "--quiet")
    (tmp_path / ".bdscan.toml").write_text('searches = 2\n')
    r = invoke(*base, "--seed", "5", "--threshold", "-1e9")
    assert r.exit_code == ExitCode.FOUND, r.output
    ev = json.loads(r.stdout)["models"][0]["evidence"]
    assert [s["seed"] for s in ev["searches"]] == [5, 6] and all(s["suspected"] for s in ev["searches"])
    r = invoke(*base, "--searches", "1")  # the flag wins; one search: the report as before
    assert r.exit_code in (ExitCode.OK, ExitCode.FOUND), r.output
    assert "searches" not in json.loads(r.stdout)["models"][0]["evidence"]
    for bad in (["--searches", "0"], ["--searches", "-1"]):
        r = invoke(*base, *bad)
        assert r.exit_code == ExitCode.USAGE and "--searches must be a whole number of at least 1" in r.output
    (tmp_path / ".bdscan.toml").write_text('searches = "three"\n')
    r = invoke(*base)
    assert r.exit_code == ExitCode.USAGE and "searches must be a whole number of at least 1, not 'three'" in r.output


def test_reference_from_settings_and_flags(tmp_path, monkeypatch):
    """Each model is scored against the reference ('reference' in [tool.bdscan], the flag wins); the reference's
    searches run once for all the models of one call; a model scored against itself has no mask anomaly."""
    import bdscan.detect as detect_mod
    from bdscan.fileio import sha256_file

    runs = []
    real = detect_mod.detect
    monkeypatch.setattr(detect_mod, "detect", lambda *a, **k: runs.append(1) or real(*a, **k))
    path, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", shape=(1, 16, 16), classes=3)
    ref, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", shape=(1, 16, 16), classes=3, name="release", seed=1)
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".bdscan.toml").write_text('reference = "release.safetensors"\n')
    out = tmp_path / "r.json"
    r = invoke("scan", path.name, ref.name, "--samples", "s", "--format", "json", "-o", out)
    assert r.exit_code in (ExitCode.OK, ExitCode.FOUND), r.output
    assert len(runs) == 3  # two suspects and the reference, searched once for both
    by_name = {m["path"]: m["evidence"] for m in json.loads(out.read_text())["models"]}
    for ev in by_name.values():
        assert ev["reference"]["path"] == "release.safetensors"
        assert ev["reference"]["sha256"] == sha256_file(ref)
        assert set(ev["reference"]["mask_l1"]) == {"0", "1", "2"}
    assert set(by_name["release.safetensors"]["anomaly_index"].values()) == {0.0}
    assert by_name["release.safetensors"]["reference"]["mask_l1"] == by_name["release.safetensors"]["mask_l1"]
    r = invoke("scan", path.name, "--samples", "s", "--format", "json", "--quiet", "--reference", path.name)
    ev = json.loads(r.stdout)["models"][0]["evidence"]
    assert ev["reference"]["path"] == path.name and set(ev["anomaly_index"].values()) == {0.0}  # the flag wins
    (tmp_path / ".bdscan.toml").write_text("reference = 3\n")
    r = invoke("scan", path.name, "--samples", "s", "--quiet")
    assert r.exit_code == ExitCode.USAGE and "reference must be a path, not 3" in r.output


def test_accepted_findings_pass_the_gate(tmp_path, monkeypatch):
    path, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", shape=(1, 16, 16), classes=3)
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    monkeypatch.chdir(tmp_path)
    flag_all = ("scan", path.name, "--samples", "s", "--threshold", "-1e9", "--format", "json", "--quiet")
    r = invoke(*flag_all)
    assert r.exit_code == ExitCode.FOUND, r.output
    m = json.loads(r.stdout)["models"][0]
    acc = tmp_path / "accepted.json"
    acc.write_text(json.dumps({"accepted": [{"sha256": m["sha256"], "target_class": m["target_class"],
                                             "reason": "reviewed"}]}))
    (tmp_path / ".bdscan.toml").write_text('accepted = "accepted.json"\n')
    r = invoke(*flag_all)
    assert r.exit_code == ExitCode.OK, r.output
    doc = json.loads(r.stdout)
    assert doc["models"][0]["suspected"] and doc["models"][0]["accepted"] == {"reason": "reviewed"}
    assert doc["summary"]["suspected"] == 1 and doc["summary"]["accepted"] == 1
    # another class or another file is a new finding: tests/test_accepted.py
    r = invoke(*flag_all, "--accepted", "missing.json")  # the flag wins over the settings file; checked first
    assert r.exit_code == ExitCode.USAGE and "missing.json: accepted-findings file not found" in r.output


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_pre_commit_hook_runs_for_real(tmp_path):
    """pre-commit try-repo with this repository's hook on a git repo holding a model file."""
    pre_commit = Path(sys.executable).parent / "pre-commit"
    assert pre_commit.exists(), "pre-commit is part of the test extra: pip install '.[test]'"
    repo = tmp_path / "repo"
    repo.mkdir()
    path, _, _ = make_model_file(repo, "bdscan.small_cnn", shape=(1, 16, 16), classes=3, name="net")
    write_samples(repo / "samples", shape=(16, 16), classes=3)
    (repo / "pyproject.toml").write_text('[tool.bdscan]\nsamples = "samples"\nthreshold = 1e9\n')
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PRE_COMMIT_HOME": str(tmp_path / "pc"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "."]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    run = subprocess.run([str(pre_commit), "try-repo", str(ROOT), "bdscan-scan-system", "--all-files"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "bdscan scan" in run.stdout and "Passed" in run.stdout
    # a model the gate must stop: a threshold no model passes
    (repo / "pyproject.toml").write_text('[tool.bdscan]\nsamples = "samples"\nthreshold = -1e9\n')
    run = subprocess.run([str(pre_commit), "try-repo", str(ROOT), "bdscan-scan-system", "--all-files"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Failed" in run.stdout
