"""Make tests/assets/bad/: hostile and broken inputs, one folder per case, and cases.json saying what bdscan
must answer to each (exit code and words of its one-line error, or success for inputs it must accept).

Run from the repository root (deterministic; rewrites tests/assets/bad/ only):
    python tests/assets/make_bad.py

cases.json: a list of {"id", "about", "args", "exit", "words", "ok"}, ok cases adding "creates" (what appears
in {out}) and optionally "stdout_words". "args" follow ``bdscan`` and may hold placeholders the test fills in:
{bad} this corpus, {case} the case's folder, {out} an empty output folder the test creates, {ro} an output
path that cannot be written.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BAD = HERE / "bad"
SHARED_MODEL = "{bad}/_shared/cnn3.safetensors"  # bdscan.small_cnn, 3 classes, 1x16x16, float16 weights
HOSTILE_LABELS = ["[/]", "[bold red]x[/bold red]", "<script>y</script>"]  # Rich markup and HTML in label names
SHARED_SAMPLES = "{bad}/_shared/samples"
CLASSES, SIZE = 3, 16

CASES: list[dict] = []


def case(cid: str, about: str, args: list[str], exit: int, words: list[str], **extra) -> Path:
    folder = BAD / cid
    folder.mkdir(parents=True, exist_ok=True)
    CASES.append({"id": cid, "about": about, "args": args, "exit": exit, "words": words, "ok": exit == 0, **extra})
    return folder


# ---------------------------------------------------------------- safetensors, written by hand


def st_bytes(tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict | None = None,
             header_extra: dict | None = None) -> bytes:
    """A safetensors file from (dtype, shape, raw bytes) triples, laid out the way the reference writer does."""
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header.update(header_extra or {})
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def st_raw_header(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def f32(values) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


META = {"architecture": "bdscan.small_cnn", "num_classes": str(CLASSES), "input_size": f"1,{SIZE},{SIZE}"}


def small_cnn_state(classes: int = CLASSES) -> dict[str, tuple[str, list[int], bytes]]:
    import torch

    from bdscan.model.registry import build

    torch.manual_seed(0)
    state = build("bdscan.small_cnn", classes, 1).state_dict()
    out = {}
    for name, t in state.items():
        if t.is_floating_point():
            out[name] = ("F16", list(t.shape), t.to(torch.float16).numpy().astype("<f2").tobytes())
        else:
            out[name] = ("I64", list(t.shape), t.numpy().astype("<i8").tobytes())
    return out


def safetensors_cases() -> None:
    inspect = ["inspect", "{case}/model.safetensors"]
    w = {"w": ("F32", [4], f32([1, 2, 3, 4]))}

    layers = {f"layer{i}.weight": ("F32", [64], f32(np.linspace(-1, 1, 64) * i)) for i in range(4)}
    full = st_bytes(layers, META)
    (case("st_truncated", "a model file cut short in its tensor data", inspect, 2,
          ["model.safetensors", "truncated"]) / "model.safetensors").write_bytes(full[: len(full) * 2 // 3])
    (case("st_header_beyond_file", "header length larger than the file", inspect, 2,
          ["model.safetensors", "header length", "beyond file size"]) / "model.safetensors").write_bytes(
        struct.pack("<Q", 1 << 20) + b'{"w":')
    (case("st_header_not_json", "header bytes that are not JSON", inspect, 2,
          ["model.safetensors", "not JSON"]) / "model.safetensors").write_bytes(
        st_raw_header(b"\xff\xfe not json at all {{{ ", b"\0" * 16))
    overlap = json.dumps({
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }).encode()
    (case("st_offsets_overlap", "two tensors sharing bytes", inspect, 2,
          ["model.safetensors", "overlap"]) / "model.safetensors").write_bytes(st_raw_header(overlap, b"\0" * 24))
    far = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [4096, 4112]}}).encode()
    (case("st_offsets_out_of_range", "tensor offsets past the end of the data", inspect, 2,
          ["model.safetensors", "'a'", "out of range"]) / "model.safetensors").write_bytes(
        st_raw_header(far, b"\0" * 16))
    ints = {"features.0.0.weight": ("I64", [2], np.array([1, 2], "<i8").tobytes())}
    (case("st_wrong_dtype", "integer weights", inspect, 2,
          ["model.safetensors", "dtype I64", "floating point"]) / "model.safetensors").write_bytes(
        st_bytes(ints, META))
    (case("st_nan_weights", "NaN in the weights", inspect, 2,
          ["model.safetensors", "'w'", "NaN or Inf"]) / "model.safetensors").write_bytes(
        st_bytes({"w": ("F32", [3], f32([1, float("nan"), 2]))}, META))
    state = small_cnn_state()
    first = next(iter(state))
    (case("st_missing_tensors", "only the first tensor of the architecture", inspect, 2,
          ["model.safetensors", "bdscan.small_cnn", "missing"]) / "model.safetensors").write_bytes(
        st_bytes({first: state[first]}, META))
    extra = dict(state, **{"backdoor.trigger": ("F32", [4], f32([0, 0, 0, 1]))})
    (case("st_extra_tensor", "every tensor of the architecture and one more", inspect, 2,
          ["model.safetensors", "unexpected tensor", "backdoor.trigger"]) / "model.safetensors").write_bytes(
        st_bytes(extra, META))
    (case("st_head_mismatch", "metadata says 10 classes, the head has 3 outputs", inspect, 2,
          ["model.safetensors", "num_classes is 10", "3 outputs"]) / "model.safetensors").write_bytes(
        st_bytes(state, dict(META, num_classes="10")))
    (case("st_num_classes_huge", "metadata asks for 2**34 classes (must not allocate them)", inspect, 2,
          ["model.safetensors", "num_classes is 17179869184", "3 outputs"]) / "model.safetensors").write_bytes(
        st_bytes(state, dict(META, num_classes=str(2**34))))
    (case("st_input_size_huge", "a 100000x100000 input", inspect, 2,
          ["model.safetensors", "input size", "too large"]) / "model.safetensors").write_bytes(
        st_bytes(w, dict(META, input_size="3,100000,100000")))
    (case("st_unknown_architecture", "an architecture nobody registered", inspect, 4,
          ["model.safetensors", "unknown architecture 'no.such_net'"]) / "model.safetensors").write_bytes(
        st_bytes(w, dict(META, architecture="no.such_net")))
    # 'module:callable' from a file would import and call code the file names: os._exit(3) would end the process
    (case("st_architecture_names_code", "metadata architecture 'os:_exit' (code named by the file)", inspect, 4,
          ["model.safetensors", "'os:_exit'", "--arch"]) / "model.safetensors").write_bytes(
        st_bytes(w, dict(META, architecture="os:_exit")))


# ---------------------------------------------------------------- pickle and other non-formats


class _Smuggled:
    """Unpickling this calls print(): proof that a file's code ran."""

    def __reduce__(self):
        return (print, ("SMUGGLED CODE RAN",))


def pickle_cases() -> None:
    payload = pickle.dumps({"state_dict": _Smuggled()}, protocol=2)
    for suffix in ("pt", "pth"):
        (case(f"pickle_{suffix}", f"a pickle checkpoint (.{suffix}) whose unpickling runs code",
              ["inspect", f"{{case}}/model.{suffix}"], 3,
              [f"model.{suffix}", "pickle", "refused", "safetensors"]) / f"model.{suffix}").write_bytes(payload)
    (case("unknown_suffix", "a Keras file", ["inspect", "{case}/model.h5"], 3,
          ["model.h5", "unsupported model format .h5"]) / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 24)


# ---------------------------------------------------------------- ONNX


def onnx_model(*, input_dims=("N", 1, 8, 8), head: str | None = None, external: str | None = None):
    """A tiny Conv-ReLU-GAP-Gemm classifier (3 classes, opset 17), bent as asked."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    conv_w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "conv_w")
    gemm_w = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "gemm_w")
    if external is not None:
        conv_w.ClearField("raw_data")
        conv_w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", external), ("offset", "0"), ("length", "144")):
            entry = conv_w.external_data.add()
            entry.key, entry.value = k, v
    nodes = [
        helper.make_node("Conv", ["input", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "gemm_w"], ["logits"], transB=1),
    ]
    out_name = "logits"
    if head:
        nodes.append(helper.make_node(head, [out_name], ["y"]))
        out_name = "y"
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            list(input_dims))],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", 3])],
                              initializer=[conv_w, gemm_w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_bad")
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model) if external is None else model


def dynamo_export() -> bytes:
    import tempfile
    import warnings

    import torch
    from torch import nn

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(4, 3)).eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(m, (torch.rand(1, 1, 8, 8),), dynamo=True, verbose=False).save(str(path))
        return path.read_bytes()


def onnx_cases() -> None:
    inspect = ["inspect", "{case}/model.onnx"]
    good = onnx_model().SerializeToString()
    (BAD / "_shared" / "tiny.onnx").write_bytes(good)
    (case("onnx_truncated", "a model cut short", inspect, 2, ["model.onnx", "not a readable ONNX model"])
     / "model.onnx").write_bytes(good[: len(good) // 2])
    (case("onnx_not_a_model", "a text file named .onnx", inspect, 2, ["model.onnx", "not a readable ONNX model"])
     / "model.onnx").write_bytes(b"I am a text file, not a protobuf.\n" * 8)
    (case("onnx_unsupported_operator", "Hardmax, which onnx2torch cannot convert", inspect, 2,
          ["model.onnx", "operator Hardmax"]) / "model.onnx").write_bytes(
        onnx_model(head="Hardmax").SerializeToString())
    (case("onnx_dynamo_export", "a torch.onnx dynamo export (opset 18+)", inspect, 2,
          ["model.onnx", "dynamo", "dynamo=False"]) / "model.onnx").write_bytes(dynamo_export())
    (case("onnx_external_outside", "external data pointing outside the model's folder", inspect, 2,
          ["model.onnx", "outside the model's folder", "refused"]) / "model.onnx").write_bytes(
        onnx_model(external="../../../../../../../../etc/passwd").SerializeToString())
    (case("onnx_dynamic_channels", "input without a fixed channel count", inspect, 2,
          ["model.onnx", "no fixed channel count"]) / "model.onnx").write_bytes(
        onnx_model(input_dims=("N", "C", 8, 8)).SerializeToString())
    (case("onnx_huge_input", "a 1x100000x100000 input", inspect, 2, ["model.onnx", "input size", "too large"])
     / "model.onnx").write_bytes(onnx_model(input_dims=("N", 1, 100000, 100000)).SerializeToString())


# ---------------------------------------------------------------- images and samples folders


def png(path: Path, seed: int, mode: str = "L", size: int = SIZE) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(path, format="PNG")


def samples(root: Path, classes=range(CLASSES), per_class: int = 2, seed: int = 0) -> Path:
    for k in classes:
        (root / str(k)).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            png(root / str(k) / f"{i}.png", seed * 1000 + int(k) * 10 + i if str(k).isdigit() else seed + i)
    return root


def bomb_png() -> bytes:
    """A PNG of under 100 bytes that declares 100000 x 100000 pixels (10 gigapixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096, 9)) + \
        chunk(b"IEND", b"")


def sixteen_bit(path: Path, value: int) -> None:
    from PIL import Image

    arr = np.full((SIZE, SIZE), value, dtype=np.uint16)
    arr[:, : SIZE // 2] = 65535 - value
    Image.fromarray(arr).save(path, format="PNG")  # mode I;16


def cmyk_jpeg(path: Path, cmyk: tuple[int, int, int, int]) -> None:
    from PIL import Image

    Image.new("CMYK", (SIZE, SIZE), cmyk).save(path, format="JPEG", quality=95)


def samples_cases() -> None:
    from PIL import Image

    clean = ["clean", SHARED_MODEL, "--samples", "{case}/samples", "--out", "{out}", "--quiet"]
    samples(BAD / "_shared" / "samples")

    case("samples_missing", "--samples names nothing", clean, 2, ["samples folder", "does not exist"])
    folder = case("samples_empty", "an empty samples folder (a hidden file only)", clean, 2,
                  ["has no images", "<class>"])
    (folder / "samples").mkdir()
    (folder / "samples" / ".keep").write_text("", encoding="utf-8")  # git keeps no empty folders
    samples(case("samples_one_class", "every image in class 0", clean, 2, ["only one class"]) / "samples",
            classes=[0], per_class=3)
    samples(case("samples_unknown_class", "a class folder named 'cat' (the model has no labels)", clean, 2,
                 ["unknown class folder 'cat'"]) / "samples", classes=[0, 1, "cat"])
    folder = case("samples_non_image_files", "class folders holding text and JSON only", clean, 2,
                  ["has no images"])
    for k in range(CLASSES):
        (folder / "samples" / str(k)).mkdir(parents=True)
        (folder / "samples" / str(k) / "notes.txt").write_text("no pictures here\n", encoding="utf-8")
        (folder / "samples" / str(k) / "labels.json").write_text("[]\n", encoding="utf-8")
    root = samples(case("samples_zero_byte_image", "a zero-byte .png", clean, 2, ["empty.png", "empty image file"])
                   / "samples")
    (root / "2" / "empty.png").write_bytes(b"")
    root = samples(case("samples_corrupt_png", "a PNG cut off inside its pixel data", clean, 2,
                        ["cut.png", "corrupt image"]) / "samples")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 64), dtype=np.uint8), "L").save(buf, "PNG")
    (root / "0" / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    root = samples(case("samples_decompression_bomb", "a tiny PNG declaring 10 gigapixels", clean, 2,
                        ["bomb.png", "decompression bomb"]) / "samples")
    (root / "1" / "bomb.png").write_bytes(bomb_png())
    root = samples(case("samples_symlink_loop", "an image that is a symlink to itself", clean, 2,
                        ["loop.png", "symbolic links"]) / "samples")
    os.symlink("loop.png", root / "0" / "loop.png")
    samples(case("samples_one_per_class", "a single image per class", clean, 2,
                 ["class 0 has 1 image(s)", "at least 2 per class"]) / "samples", per_class=1)

    export = ["export", SHARED_MODEL, "--to", "onnx", "--out", "{out}/model.onnx", "--samples", "{case}/samples"]
    root = case("samples_16bit_png", "16-bit greyscale PNGs: accepted, scaled from 0..65535", export, 0, [],
                creates=["{out}/model.onnx"]) / "samples"
    for k in range(2):
        (root / str(k)).mkdir(parents=True)
        sixteen_bit(root / str(k) / "deep.png", 4096 + 20000 * k)
    root = case("samples_cmyk_jpeg", "CMYK JPEGs: accepted, converted to the model's channels", export, 0, [],
                creates=["{out}/model.onnx"]) / "samples"
    for k, ink in enumerate([(255, 0, 0, 0), (0, 0, 255, 0)]):
        (root / str(k)).mkdir(parents=True)
        cmyk_jpeg(root / str(k) / "print.jpg", ink)


def output_cases() -> None:
    valid = ["clean", SHARED_MODEL, "--samples", SHARED_SAMPLES, "--quiet"]
    case("out_not_writable", "--out somewhere nothing can be written", valid + ["--out", "{ro}"], 2,
         ["not writable"])
    folder = case("out_is_input_folder", "--out is the model's own folder, whose name would clash",
                  ["clean", "{case}/cnn3.safetensors", "--samples", SHARED_SAMPLES, "--quiet", "--out", "{case}"],
                  2, ["input's folder", "cnn3.safetensors", "clash"])
    # never loaded: the clash is found before the model is read
    (folder / "cnn3.safetensors").write_bytes(st_bytes({"w": ("F32", [1], f32([0]))}, META))
    folder = case("out_has_earlier_outputs", "--out already holds a report and --force is not given",
                  valid + ["--out", "{case}/previous"], 2, ["already holds report.json", "--force"])
    (folder / "previous").mkdir()
    (folder / "previous" / "report.json").write_text('{"earlier": true}\n', encoding="utf-8")


def usage_cases() -> None:
    scan = ["scan", SHARED_MODEL, "--samples", SHARED_SAMPLES, "--quiet"]
    clean = ["clean", SHARED_MODEL, "--samples", SHARED_SAMPLES, "--quiet", "--out", "{out}/cleaned"]
    case("scan_searches_zero", "--searches 0: no search would decide anything", scan + ["--searches", "0"], 4,
         ["--searches must be a whole number of at least 1, not 0"])
    case("clean_searches_negative", "--searches -2 for clean's detection", clean + ["--searches", "-2"], 4,
         ["--searches must be a whole number of at least 1, not -2"])
    full = st_bytes(small_cnn_state(), META)
    (case("scan_reference_truncated", "--reference names a model file cut short", scan + [
        "--reference", "{case}/ref.safetensors"], 2, ["--reference", "ref.safetensors", "truncated"])
     / "ref.safetensors").write_bytes(full[: len(full) * 2 // 3])
    (case("scan_reference_other_task", "--reference is a model with 4 classes, the suspect has 3", scan + [
        "--reference", "{case}/ref.safetensors"], 4, ["--reference", "4 classes", "same task"])
     / "ref.safetensors").write_bytes(st_bytes(small_cnn_state(4), dict(META, num_classes="4")))
    case("scan_reference_missing", "--reference names no file", scan + ["--reference", "{case}/nothing.safetensors"],
         2, ["--reference", "nothing.safetensors"])
    case("clean_reference_with_target", "--reference with --target-class: no detection runs to use it",
         clean + ["--target-class", "0", "--reference", SHARED_MODEL], 4, ["--reference serves detection"])


def main() -> int:
    sys.path.insert(0, str(HERE.parents[1]))
    if BAD.exists():
        shutil.rmtree(BAD)
    (BAD / "_shared").mkdir(parents=True)
    (BAD / "_shared" / "cnn3.safetensors").write_bytes(
        st_bytes(small_cnn_state(), dict(META, labels=json.dumps(HOSTILE_LABELS))))
    case("labels_with_markup", "label names holding Rich markup and HTML: shown as they are",
         ["inspect", SHARED_MODEL], 0, [], creates=[], stdout_words=HOSTILE_LABELS)
    safetensors_cases()
    pickle_cases()
    onnx_cases()
    samples_cases()
    output_cases()
    usage_cases()
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for cid in ids:  # git keeps no empty folder; cases that need nothing of their own still get theirs
        if not any((BAD / cid).iterdir()):
            (BAD / cid / ".keep").write_bytes(b"")
    (BAD / "cases.json").write_text(json.dumps(CASES, indent=1) + "\n", encoding="utf-8")
    total = sum(p.lstat().st_size for p in BAD.rglob("*"))
    print(f"{len(CASES)} cases in {BAD} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
