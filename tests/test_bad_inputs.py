"""Hostile and broken inputs (tests/assets/bad, made by tests/assets/make_bad.py) through the real CLI.

Each case runs as its own ``bdscan`` process. Every refused input must give its documented exit code and one
``bdscan: error:`` line naming the problem, no traceback, nothing in the output folder, and leave every input
byte as it was; the inputs bdscan must accept (16-bit PNG, CMYK JPEG) must succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

BAD = Path(__file__).resolve().parent / "assets" / "bad"
CASES = {c["id"]: c for c in json.loads((BAD / "cases.json").read_text(encoding="utf-8"))}
WORKERS = 2  # subprocesses at a time; most of each one is importing torch


def bdscan_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("bdscan")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bdscan"]


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under ``root`` (links not followed) with its content digest, link target or kind."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def unwritable(base: Path) -> str:
    """A path under which nothing can be created: a read-only folder, or /proc for root (who may write anywhere
    else)."""
    if os.geteuid() == 0:
        return "/proc/bdscan-out"
    ro = base / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro / "out")


@dataclass
class Run:
    args: list[str]
    out: Path
    returncode: int
    stdout: str
    stderr: str


def run_case(cid: str, base: Path) -> Run:
    base.mkdir(parents=True)
    out = base / "out"
    out.mkdir()
    fill = {"{bad}": str(BAD), "{case}": str(BAD / cid), "{out}": str(out), "{ro}": unwritable(base)}
    args = []
    for a in CASES[cid]["args"]:
        for key, value in fill.items():
            a = a.replace(key, value)
        args.append(a)
    env = {k: v for k, v in os.environ.items() if k != "BDSCAN_DEBUG"}
    env.update(NO_COLOR="1", COLUMNS="300")
    p = subprocess.run(bdscan_cmd() + args, capture_output=True, text=True, env=env, timeout=300,
                       stdin=subprocess.DEVNULL, cwd=base)
    return Run(args, out, p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """Run the selected cases two at a time; hash the corpus before and after all of them."""
    selected = [item.callspec.params["cid"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_bad_case" and hasattr(item, "callspec")]
    base = tmp_path_factory.mktemp("bad")
    before = tree_digest(BAD)
    with ThreadPoolExecutor(WORKERS) as pool:
        results = dict(zip(selected, pool.map(lambda cid: run_case(cid, base / cid), selected)))
    after = tree_digest(BAD)
    for cid in selected:  # hand the read-only folder back so pytest can clean up
        if (base / cid / "ro").exists():
            (base / cid / "ro").chmod(0o755)
    return results, before, after


def inputs_of(digest: dict[str, str], cid: str) -> dict[str, str]:
    return {k: v for k, v in digest.items() if k.split(os.sep)[0] in (cid, "_shared")}


@pytest.mark.slow
@pytest.mark.parametrize("cid", sorted(CASES))
def test_bad_case(cid, runs):
    results, before, after = runs
    case, run = CASES[cid], results[cid]
    shown = f"bdscan {' '.join(run.args)}\nexit {run.returncode}\nstdout: {run.stdout!r}\nstderr: {run.stderr!r}"
    assert "Traceback" not in run.stdout + run.stderr, shown
    assert "SMUGGLED" not in run.stdout + run.stderr, shown  # a pickle's payload never runs
    assert run.returncode == case["exit"], shown
    assert inputs_of(after, cid) == inputs_of(before, cid), "an input changed or a file appeared beside it"
    made = sorted(p.name for p in run.out.iterdir())
    assert sorted(p.name for p in run.out.parent.iterdir()) in (["out"], ["out", "ro"]), "a file appeared in cwd"
    if case["ok"]:
        assert not [ln for ln in run.stderr.splitlines() if ln.startswith("bdscan: error")], shown
        wanted = sorted(Path(c.replace("{out}", str(run.out))).name for c in case["creates"])
        assert made == wanted, shown  # the outputs and nothing else: no partial files left over
        for word in case.get("stdout_words", []):
            assert word in run.stdout, f"{word!r} missing from stdout\n{shown}"
        return
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bdscan: error: "), shown
    for word in case["words"]:
        assert word in lines[0], f"{word!r} missing from the error\n{shown}"
    assert run.stdout == "", shown
    assert made == [], shown


def test_corpus_covers_the_issue():
    """At least 30 cases, each folder present, the whole corpus small, the kinds the issue names all there."""
    assert len(CASES) >= 30
    for cid, case in CASES.items():
        assert (BAD / cid).is_dir(), cid
        assert case["ok"] == (case["exit"] == 0) and (case["ok"] or case["words"]), cid
    size = sum(p.lstat().st_size for p in BAD.rglob("*"))
    assert size < 2 * 1024 * 1024
    required = {
        "st_truncated", "st_header_beyond_file", "st_header_not_json", "st_offsets_overlap",
        "st_offsets_out_of_range", "st_wrong_dtype", "st_missing_tensors", "st_extra_tensor", "st_nan_weights",
        "st_head_mismatch", "onnx_truncated", "onnx_not_a_model", "onnx_unsupported_operator", "onnx_dynamo_export",
        "onnx_external_outside", "onnx_dynamic_channels", "pickle_pt", "pickle_pth", "samples_missing",
        "samples_empty", "samples_one_class", "samples_unknown_class", "samples_non_image_files",
        "samples_zero_byte_image", "samples_corrupt_png", "samples_decompression_bomb", "samples_16bit_png",
        "samples_cmyk_jpeg", "samples_symlink_loop", "out_not_writable", "out_is_input_folder",
        "samples_one_per_class",
    }
    assert required <= set(CASES), required - set(CASES)
    assert (BAD / "samples_decompression_bomb/samples/1/bomb.png").stat().st_size < 1024


# ------------------------------------------------------------------ in-process checks on the same files


def test_controls_load():
    """The shared model, ONNX graph and samples are sound, so each case fails for its own defect only."""
    from bdscan.data import load_samples
    from bdscan.model import load_model

    st = load_model(BAD / "_shared" / "cnn3.safetensors")
    assert (st.spec.architecture, st.spec.num_classes, st.spec.input_shape) == ("bdscan.small_cnn", 3, (1, 16, 16))
    assert st.spec.labels == ("[/]", "[bold red]x[/bold red]", "<script>y</script>")
    assert load_model(BAD / "_shared" / "tiny.onnx").spec.num_classes == 3
    s = load_samples(BAD / "_shared" / "samples", st.spec)
    assert tuple(s.x.shape) == (6, 1, 16, 16) and s.y.tolist() == [0, 0, 1, 1, 2, 2]


def test_sixteen_bit_png_is_scaled_not_clipped():
    from bdscan.data import read_image
    from bdscan.model import ModelSpec

    arr = read_image(BAD / "samples_16bit_png/samples/0/deep.png", ModelSpec("x", 3, (1, 16, 16)))
    # left half 65535-4096, right half 4096, out of 65535; within one 8-bit step
    assert arr.shape == (1, 16, 16)
    np.testing.assert_allclose(arr[0, :, :8], 61439 / 65535, atol=1 / 255)
    np.testing.assert_allclose(arr[0, :, 8:], 4096 / 65535, atol=1 / 255)


@pytest.mark.parametrize("k,rgb", [(0, (0.0, 1.0, 1.0)), (1, (1.0, 1.0, 0.0))])  # cyan ink, yellow ink
def test_cmyk_jpeg_becomes_rgb(k, rgb):
    from bdscan.data import read_image
    from bdscan.model import ModelSpec

    arr = read_image(BAD / f"samples_cmyk_jpeg/samples/{k}/print.jpg", ModelSpec("x", 3, (3, 8, 8)))
    assert arr.shape == (3, 8, 8)
    np.testing.assert_allclose(arr.reshape(3, -1).mean(1), rgb, atol=0.03)
    grey = read_image(BAD / f"samples_cmyk_jpeg/samples/{k}/print.jpg", ModelSpec("x", 3, (1, 8, 8)))
    np.testing.assert_allclose(grey.mean(), 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2], atol=0.03)


def test_huge_num_classes_is_refused_without_allocating():
    """2**34 classes would need 64 TB: the file is matched against a meta-device skeleton first (a real build
    would fail with 'cannot allocate', or with fewer classes exhaust memory)."""
    from bdscan.errors import ModelLoadError
    from bdscan.model import load_model

    with pytest.raises(ModelLoadError, match="num_classes is 17179869184 in the metadata but the head"):
        load_model(BAD / "st_num_classes_huge/model.safetensors")


def test_symlink_loop_is_an_error_not_silently_skipped(tmp_path):
    from bdscan.data import load_samples
    from bdscan.errors import DataError
    from bdscan.model import ModelSpec

    root = tmp_path / "s"
    shutil.copytree(BAD / "_shared" / "samples", root)
    os.symlink("loop.png", root / "1" / "loop.png")
    with pytest.raises(DataError, match="loop.png: cannot read"):
        load_samples(root, ModelSpec("x", 3, (1, 16, 16)))
    os.mkfifo(root / "2" / "pipe.png")  # a FIFO would block a reader forever: skipped, like any non-file
    (root / "1" / "loop.png").unlink()
    assert len(load_samples(root, ModelSpec("x", 3, (1, 16, 16)))) == 6


def test_outputs_keep_the_umask(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the renamed output gets what open() would give."""
    from bdscan.fileio import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "x.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["x.bin"]


def test_meta_check_matches_real_build():
    """The meta-device skeleton used to vet a file has the real model's tensor names and shapes."""
    from bdscan.model import registry

    with torch.device("meta"):
        skeleton = registry.lookup("bdscan.small_cnn").builder(3)
        registry.adapt_in_channels(skeleton, 1)
    real = registry.build("bdscan.small_cnn", 3, 1)
    assert {k: tuple(v.shape) for k, v in skeleton.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in real.state_dict().items()}
