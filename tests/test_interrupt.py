"""Ctrl-C during ``bdscan clean``: exit 130, one 'interrupted' line, and no file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bdscan.fileio import atomic_path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "models" / "badnets-cnn.safetensors"
SAMPLES = ROOT / "examples" / "samples"
STAGES = ("synthesise", "detect", "edit", "repair")  # stage lines printed once the real work has begun


def bdscan_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("bdscan")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bdscan"]


@pytest.mark.slow
@pytest.mark.parametrize("out_exists", [False, True], ids=["new-out", "existing-out"])
def test_sigint_during_clean_leaves_nothing(tmp_path, out_exists):
    out = tmp_path / "out"
    if out_exists:
        out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BDSCAN_DEBUG"}
    env.update(NO_COLOR="1", COLUMNS="300")
    proc = subprocess.Popen(
        bdscan_cmd() + ["clean", str(MODEL), "--samples", str(SAMPLES), "--target-class", "0", "--epochs", "60",
                        "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path,
        # SIGINT at its default in bdscan whatever the runner inherited (a shell job started with & ignores it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any(s in ln for ln in lines for s in STAGES):
            assert proc.poll() is None, f"clean ended before it was interrupted:\n{''.join(lines)}"
            assert time.monotonic() < deadline, f"no work stage reached:\n{''.join(lines)}"
            time.sleep(0.1)
        time.sleep(0.5)  # inside the stage's tensor work (60 repair epochs keep the run going for a while)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    stdout = proc.stdout.read()
    stderr = "".join(lines)
    shown = f"exit {code}\nstdout: {stdout!r}\nstderr: {stderr!r}"
    assert code == 130, shown
    assert "Traceback" not in stdout + stderr, shown
    said = [ln for ln in stderr.splitlines() if "interrupted" in ln]
    assert said == ["bdscan: interrupted"], shown
    assert stderr.strip().splitlines()[-1] == "bdscan: interrupted", shown
    if out_exists:
        assert list(out.iterdir()) == [], shown
    else:
        assert not out.exists(), shown
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out"] if out_exists else []), shown


def test_atomic_write_interrupted_leaves_no_partial_file(tmp_path):
    target = tmp_path / "model.safetensors"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path  # the temporary file sits beside the target: rename is atomic
            tmp.write_bytes(b"half a model")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_until_complete(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new and incomplete", encoding="utf-8")
            raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
