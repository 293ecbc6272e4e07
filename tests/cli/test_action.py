"""The composite GitHub Action's own shell steps, run with bash on a small model (no GitHub needed)."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, make_model_file, write_samples

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


def _step(name: str, inputs: dict, outputs: dict | None = None) -> tuple[str, dict]:
    """A step's script and its env, with the ${{ ... }} expressions GitHub would fill in (the cache folder's, which
    needs GitHub's expression language, left out)."""
    step = next(s for s in ACTION["runs"]["steps"] if s.get("name") == name)
    values = {f"inputs.{k}": str(v.get("default", "")) for k, v in ACTION["inputs"].items()}
    values.update({f"inputs.{k}": v for k, v in inputs.items()})
    values.update({f"steps.scan.outputs.{k}": v for k, v in (outputs or {}).items()})

    def fill(m):
        key = m.group(1).strip()
        assert key in values, f"the action uses {key}, which it does not declare"
        return values[key]

    env = {k: re.sub(r"\$\{\{(.*?)\}\}", fill, v) for k, v in step.get("env", {}).items() if k != "BDSCAN_CACHE_DIR"}
    return re.sub(r"\$\{\{(.*?)\}\}", fill, step["run"]), env


def _run(name: str, inputs: dict, env: dict, cwd: Path, outputs: dict | None = None) -> subprocess.CompletedProcess:
    script, step_env = _step(name, inputs, outputs)
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env={**env, **step_env}, capture_output=True,
                          text=True, timeout=600)


def _github_env(tmp_path: Path) -> dict:
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
            "GITHUB_OUTPUT": str(tmp_path / "gh-output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "gh-summary")}


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_action_scan_and_gate_steps(tmp_path):
    path, _, _ = make_model_file(tmp_path, "bdscan.small_cnn", shape=(1, 16, 16), classes=3, name="net")
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    (tmp_path / "pyproject.toml").write_text("[tool.bdscan]\nthreshold = -1e9\n")  # every model is flagged
    out, summary = tmp_path / "gh-output", tmp_path / "gh-summary"
    env = _github_env(tmp_path)
    inputs = {"models": path.name, "samples": "s", "searches": "2", "sarif-output": "out.sarif",
              "reference": path.name}
    run = _run("Scan", inputs, env, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.read_text().strip() == "exit-code=1"
    report = json.loads((tmp_path / "bdscan-report.json").read_text())
    assert [s["seed"] for s in report["models"][0]["evidence"]["searches"]] == [0, 1]  # the searches input arrives
    assert report["models"][0]["evidence"]["reference"]["path"] == path.name  # and the reference input
    assert json.loads((tmp_path / "out.sarif").read_text())["runs"][0]["results"][0]["ruleId"] == "BDSCAN001"
    assert summary.read_text().startswith("## bdscan scan")
    gate = lambda fail, code="1": _run("Gate", {"fail-on-detection": fail}, env, tmp_path, {"exit-code": code})
    assert gate("true").returncode == 1 and gate("false").returncode == 0
    assert gate("true", "0").returncode == 0 and gate("false", "3").returncode == 3


def test_action_scripts_take_inputs_as_variables_so_a_model_name_cannot_run_code(tmp_path):
    """A models input from a pull request's changed files is untrusted: pasted into a script, a file named
    "$(touch pwned).onnx" would run. The inputs reach the scripts through env only."""
    for step in ACTION["runs"]["steps"]:
        assert "${{" not in step.get("run", "").replace("${{ github.action_path }}", ""), step["name"]
    write_samples(tmp_path / "s", shape=(16, 16), classes=3)
    run = _run("Scan", {"models": "$(touch pwned).onnx `touch pwned2`.onnx", "samples": "s"}, _github_env(tmp_path),
               tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr  # the step records bdscan's exit code; the gate acts on it
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert (tmp_path / "gh-output").read_text().strip() == "exit-code=2"  # the words are paths: no such files


def test_action_keeps_the_proxy_cache_between_runs_unless_told_not_to():
    """The cache step and the folder the scan is pointed at both follow the `cache` input; off means off."""
    steps = {s.get("name"): s for s in ACTION["runs"]["steps"]}
    cache = steps["Proxy-model cache"]
    assert cache["uses"].startswith("actions/cache@") and cache["if"] == "inputs.cache == 'true'"
    folder = steps["Scan"]["env"]["BDSCAN_CACHE_DIR"]
    for where in (cache["with"]["path"], folder):
        assert "runner.temp" in where and "bdscan-cache" in where
    assert "inputs.cache == 'true'" in folder and folder.endswith("|| 'off' }}")
    assert ACTION["inputs"]["cache"]["default"] == "true"
