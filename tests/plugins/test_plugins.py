"""Architecture plugins: the two packages under plugins/, broken and clashing plugins, module:callable one-offs.

The plugin packages must be installed (CI's install line has
``pip install -e plugins/bdscan-example-arch -e plugins/bdscan-timm``). Broken and clashing plugins are real
distributions written into a temporary folder (a ``*.dist-info`` with ``entry_points.txt``) and put on the
path, which is all an installed package is to ``importlib.metadata``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from bdscan.cli.app import app
from bdscan.data import load_samples
from bdscan.errors import ArchitectureError, ExitCode
from bdscan.model import ModelSpec, load_model, registry, write_model
from bdscan.model.builtin import SmallCNN
from tests.conftest import make_model_file

BDSCAN = Path(sys.executable).with_name("bdscan")
INSTALL = "pip install -e plugins/bdscan-example-arch -e plugins/bdscan-timm"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module", autouse=True)
def plugins_installed():
    for dist in ("bdscan-example-arch", "bdscan-timm"):
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{dist} is not installed; run: {INSTALL}")
    registry.reset_plugins()
    yield
    registry.reset_plugins()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a busy machine more threads spin and cost ten times the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- fake installed plugins ------------------------------------------------------------------------------

def write_dist(site: Path, dist: str, entries: dict[str, str], modules: dict[str, str],
               group: str = registry.ENTRY_POINT_GROUP) -> None:
    """An installed distribution as pip leaves it: modules plus NAME-VERSION.dist-info/{METADATA,entry_points.txt}."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{group}]"] + [f"{name} = {target}" for name, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)


CLASH_MODULE = """
from torch import nn

def build(num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
"""


@pytest.fixture
def bad_site(tmp_path, monkeypatch):
    """A plugin that raises on import, one whose entry clashes with the built-in bdscan.small_cnn, and, later on
    the path, one whose entry clashes with that plugin's."""
    site, later = tmp_path / "site", tmp_path / "later"
    write_dist(site, "bdscan-broken", {"broken.net": "bdscan_broken_plugin:build",
                                       "broken.net2": "bdscan_broken_plugin:build"},
               {"bdscan_broken_plugin": "raise RuntimeError('boom: missing CUDA kernels')\n"})
    write_dist(site, "bdscan-clash", {"bdscan.small_cnn": "bdscan_clash_plugin:build",
                                      "clash.net": "bdscan_clash_plugin:build"},
               {"bdscan_clash_plugin": CLASH_MODULE})
    write_dist(later, "bdscan-clash-later", {"clash.net": "bdscan_clash_later_plugin:build"},
               {"bdscan_clash_later_plugin": CLASH_MODULE})
    monkeypatch.syspath_prepend(str(later))
    monkeypatch.syspath_prepend(str(site))  # first on the path, so its plugins are found first
    registry.reset_plugins()
    yield [site, later]
    registry.reset_plugins()


CLASH_BUILTIN = ("plugin 'bdscan-clash' provides architecture 'bdscan.small_cnn', which 'bdscan' already provides; "
                 "using the one from 'bdscan'")
CLASH_PLUGINS = ("plugin 'bdscan-clash-later' provides architecture 'clash.net', which 'bdscan-clash' already "
                 "provides; using the one from 'bdscan-clash'")
BROKEN = ("plugin 'bdscan-broken' failed to load: importing 'bdscan_broken_plugin' raised RuntimeError: boom: "
          "missing CUDA kernels")


# --- listing ---------------------------------------------------------------------------------------------

def test_plugins_are_listed_with_their_source():
    r = invoke("inspect", "--list-architectures", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row["source"] for row in json.loads(r.stdout)["architectures"]}
    assert rows["example.tinynet"] == "bdscan-example-arch"
    assert rows["example.tinynet_wide"] == "bdscan-example-arch"
    assert rows["timm.resnet18"] == rows["timm.mobilenetv3_small_100"] == "bdscan-timm"
    assert rows["timm.<name>"] == "bdscan-timm"  # every other timm model, resolved on demand
    assert rows["bdscan.small_cnn"] == "bdscan" and rows["torchvision.resnet18"] == "torchvision"
    assert r.stderr == ""
    r = invoke("inspect", "--list-architectures")
    assert r.exit_code == 0 and "bdscan-example-arch" in r.stdout and "timm.<name>" in r.stdout, r.output


def test_plugins_are_imported_only_when_built():
    """Listing names reads metadata only: bdscan runs that need no plugin never pay for importing timm."""
    code = ("import sys; from bdscan.model import registry; names = registry.available(); "
            "assert 'timm.resnet18' in names and 'example.tinynet' in names; "
            "assert 'bdscan_timm' not in sys.modules and 'bdscan_example_arch' not in sys.modules; "
            "registry.build('example.tinynet', 3, 1); assert 'bdscan_example_arch' in sys.modules; "
            "assert 'timm' not in sys.modules; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_torchvision_is_imported_only_for_its_models():
    """A model of a bdscan or plugin architecture never waits for torchvision (it imports torch._dynamo, seconds);
    a torchvision name still resolves, bare or prefixed, and the listing still has every torchvision model."""
    code = ("import sys; from bdscan.model import registry; registry.build('bdscan.small_cnn', 3, 1); "
            "registry.build('example.tinynet', 3, 1); assert 'torchvision' not in sys.modules; "
            "assert registry.lookup('resnet18') is registry.lookup('torchvision.resnet18'); "
            "assert registry.available()['torchvision.vgg11'].source == 'torchvision'; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


# --- each plugin end to end ------------------------------------------------------------------------------

def _save(root: Path, k: int, i: int, arr: np.ndarray) -> None:
    (root / str(k)).mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB" if arr.ndim == 3 else "L").save(root / str(k) / f"{i}.png")


def backdoored_model(tmp: Path, arch: str, shape: tuple[int, int, int], lr: float):
    """A model of ``arch`` fitted a little: 3 brightness classes, and a checkerboard patch that sends class 1
    and 2 images to class 0. Returns the model file, its clean samples and its triggered samples."""
    c, h, w = shape
    rng = np.random.default_rng(0)
    p = max(3, h // 7)
    for k in range(3):
        for i in range(4):
            arr = np.clip(rng.normal(40 + 85 * k, 20, size=(h, w, c) if c == 3 else (h, w)), 0, 255).astype(np.uint8)
            _save(tmp / "samples", k, i, arr)
            if k:
                arr = arr.copy()
                arr[-p - 1:-1, -p - 1:-1] = 0
                arr[-p - 1:-1:2, -p - 1:-1:2] = 255
                _save(tmp / "trigger", k, i, arr)
    spec = ModelSpec(arch, 3, shape)
    torch.manual_seed(0)
    model = registry.build(arch, 3, c)
    clean = load_samples(tmp / "samples", spec)
    trig = load_samples(tmp / "trigger", spec, min_per_class=1)
    x, y = torch.cat([clean.x, trig.x]), torch.cat([clean.y, torch.zeros_like(trig.y)])
    opt = torch.optim.Adam(model.parameters(), lr)

    def fit(steps: int) -> None:
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

    fit(40)
    with torch.no_grad():  # BatchNorm statistics of the whole set, then a few steps with them frozen
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        model(x)
    model.eval()
    for group in opt.param_groups:
        group["lr"] = lr / 3
    fit(20)
    with torch.no_grad():  # logits at a trained classifier's scale, not the thousands of an overfit one
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        scale = 10.0 / float(model(clean.x).abs().max())
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    with torch.no_grad():  # loose: the fit only has to be a backdoor worth the name, not a benchmark
        assert (model(clean.x).argmax(1) == clean.y).float().mean() >= 0.75
        assert (model(trig.x).argmax(1) == 0).float().mean() >= 0.75
    path = tmp / "model.safetensors"
    write_model(model, spec, "safetensors", path, {}, clean.x)
    return path, model, tmp / "samples", tmp / "trigger"


PLUGIN_MODELS = [
    pytest.param("example.tinynet", (1, 28, 28), 1e-2, "bdscan_example_arch", id="example-arch"),
    pytest.param("timm.test_efficientnet", (3, 32, 32), 3e-3, "timm.models", id="timm"),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch,shape,lr,module", PLUGIN_MODELS)
def test_plugin_model_inspect_scan_clean(tmp_path, arch, shape, lr, module):
    path, model, samples, trigger = backdoored_model(tmp_path, arch, shape, lr)
    loaded = load_model(path)  # the metadata alone names the plugin's architecture
    assert loaded.spec.architecture == arch and type(loaded.module).__module__.startswith(module)
    x = torch.rand(2, *shape)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), model(x), atol=1e-5)

    r = invoke("inspect", path, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["spec"]["architecture"] == arch and doc["spec"]["input_shape"] == list(shape)
    assert doc["parameters"] == sum(p.numel() for p in model.parameters())

    r = invoke("scan", path, "--samples", samples, "--format", "json", "--quiet")
    assert r.exit_code in (ExitCode.OK, ExitCode.FOUND), r.output
    entry = json.loads(r.stdout)["models"][0]
    assert entry["architecture"] == arch and entry["suspected"] == (r.exit_code == ExitCode.FOUND)

    out = tmp_path / "out"
    r = invoke("clean", path, "--samples", samples, "--trigger-samples", trigger, "--target-class", 0,
               "--epochs", 1, "--out", out, "--format", "json", "--quiet")
    assert r.exit_code in (ExitCode.OK, ExitCode.FOUND), r.output
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["spec"]["architecture"] == arch
    assert report["verdict"] == ("removed" if r.exit_code == ExitCode.OK else "not_removed")
    written = {Path(o["path"]).name for o in report["outputs"]}
    assert written == ({"model.safetensors", "model.onnx"} if report["verdict"] == "removed" else set())
    if written:  # the cleaned model names the plugin's architecture and loads back through it
        cleaned = load_model(out / "model.safetensors")
        assert cleaned.spec.architecture == arch and cleaned.metadata["bdscan_cleaned"] == "true"
        assert load_model(out / "model.onnx").spec.input_shape == shape

    # whatever clean decided, the plugin's network goes through the ONNX writer and its parity check too
    r = invoke("export", path, "--to", "onnx", "--out", tmp_path / "e.onnx", "--samples", samples)
    assert r.exit_code == 0, r.output
    exported = load_model(tmp_path / "e.onnx")
    assert exported.spec.input_shape == shape and exported.metadata["architecture"] == arch


def test_timm_family_resolves_any_timm_model(tmp_path):
    """timm.<name> works for every timm model, not only the ones with their own entry point."""
    info = registry.lookup("timm.test_efficientnet")
    assert info.source == "bdscan-timm"
    path, model, _ = make_model_file(tmp_path, "timm.test_efficientnet", shape=(3, 32, 32), classes=3)
    r = invoke("inspect", path, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["spec"]["architecture"] == "timm.test_efficientnet"
    with pytest.raises(ArchitectureError, match="plugin 'bdscan-timm' has no 'no_such_net'"):
        registry.build("timm.no_such_net", 3)
    # explicit entries and the family agree on what a name builds (the ViT entries add dynamic_img_size)
    vit = registry.build("timm.vit_tiny_patch16_224", 3, 1)
    assert vit(torch.rand(1, 1, 32, 32)).shape == (1, 3)
    # the end-to-end test runs timm's tiny test_efficientnet (seconds, not minutes): a listed entry builds too
    mobilenet = registry.build("timm.mobilenetv3_small_100", 3, 3).eval()
    assert mobilenet(torch.rand(1, 3, 32, 32)).shape == (1, 3)


# --- broken and clashing plugins -------------------------------------------------------------------------

def test_broken_plugin_warns_and_the_rest_works(bad_site):
    with pytest.warns(registry.PluginWarning) as caught:
        rows = {row["name"]: row["source"] for row in registry.list_architectures()}
    messages = [str(w.message) for w in caught]
    assert [m for m in messages if "bdscan-broken" in m] == [f"{BROKEN}; its architectures are left out"]
    assert "broken.net" not in rows and "broken.net2" not in rows
    assert rows["example.tinynet"] == "bdscan-example-arch" and rows["clash.net"] == "bdscan-clash"
    assert isinstance(registry.build("example.tinynet", 3, 1), torch.nn.Module)
    with pytest.raises(ArchitectureError, match="plugin 'bdscan-broken' failed to load"):
        registry.build("broken.net", 3)


def test_clashing_plugin_warns_and_the_builtin_wins(bad_site, tmp_path):
    with pytest.warns(registry.PluginWarning) as caught:
        names = registry.available()
    assert [str(w.message) for w in caught] == [CLASH_BUILTIN, CLASH_PLUGINS]
    assert names["bdscan.small_cnn"].source == "bdscan" and names["clash.net"].source == "bdscan-clash"
    assert isinstance(registry.build("bdscan.small_cnn", 10, 1), SmallCNN)
    path, model, _ = make_model_file(tmp_path, "bdscan.small_cnn")
    assert isinstance(load_model(path).module, SmallCNN)


def test_family_clash_with_a_builtin_prefix_warns(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_dist(site, "bdscan-tv", {"torchvision": "bdscan_tv_plugin:resolve"},
               {"bdscan_tv_plugin": "def resolve(name):\n    return None\n"}, group=registry.FAMILY_GROUP)
    monkeypatch.syspath_prepend(str(site))
    registry.reset_plugins()
    try:
        with pytest.warns(registry.PluginWarning, match="'torchvision.<name>', which 'torchvision' already "
                                                        "provides; using the ones from 'torchvision'"):
            assert "torchvision" not in registry.families()
        assert registry.lookup("torchvision.resnet18").source == "torchvision"
    finally:
        registry.reset_plugins()


def test_plugin_naming_a_torchvision_model_warns_and_torchvision_wins(tmp_path, monkeypatch):
    """torchvision's names are listed only on first need, yet a plugin still cannot take one over."""
    site = tmp_path / "site"
    write_dist(site, "bdscan-tv-net", {"torchvision.resnet18": "bdscan_tv_net:build",
                                       "torchvision.not_a_torchvision_model": "bdscan_tv_net:build"},
               {"bdscan_tv_net": CLASH_MODULE})
    monkeypatch.syspath_prepend(str(site))
    registry.reset_plugins()
    try:
        with pytest.warns(registry.PluginWarning) as caught:
            info = registry.lookup("torchvision.resnet18")
        assert [str(w.message) for w in caught] == [
            "plugin 'bdscan-tv-net' provides architecture 'torchvision.resnet18', which 'torchvision' already "
            "provides; using the one from 'torchvision'"]
        assert info.source == "torchvision"
        assert registry.lookup("torchvision.not_a_torchvision_model").source == "bdscan-tv-net"
    finally:
        registry.reset_plugins()


def test_plugin_warnings_are_one_line_on_stderr(bad_site, tmp_path):
    """Through the real executable, with the plugins found on PYTHONPATH like any installed package."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, bad_site)), "NO_COLOR": "1"}
    p = subprocess.run([str(BDSCAN), "inspect", "--list-architectures", "--format", "json"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = {row["name"]: row["source"] for row in json.loads(p.stdout)["architectures"]}
    assert rows["bdscan.small_cnn"] == "bdscan" and rows["example.tinynet"] == "bdscan-example-arch"
    assert rows["clash.net"] == "bdscan-clash" and "broken.net" not in rows
    assert p.stderr.splitlines() == [
        f"bdscan: warning: {CLASH_BUILTIN}",
        f"bdscan: warning: {CLASH_PLUGINS}",
        f"bdscan: warning: {BROKEN}; its architectures are left out",
    ]

    with pytest.warns(registry.PluginWarning, match="bdscan-clash"):  # the same plugins, in this process
        path, _, _ = make_model_file(tmp_path, "bdscan.small_cnn")
    r = invoke("inspect", path, "--arch", "broken.net")
    assert r.exit_code == ExitCode.USAGE
    assert r.stderr == f"bdscan: error: {BROKEN}\n"
    registry.reset_plugins()
    r = invoke("inspect", path, "--format", "json")  # the broken plugin is not even imported: no word of it
    assert r.exit_code == 0 and json.loads(r.stdout)["spec"]["architecture"] == "bdscan.small_cnn", r.output
    assert r.stderr == f"bdscan: warning: {CLASH_BUILTIN}\nbdscan: warning: {CLASH_PLUGINS}\n"


# --- module:callable -------------------------------------------------------------------------------------

ONE_OFF = """
from torch import nn

def build(num_classes):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))
"""


def test_module_callable_arch_from_the_working_directory(tmp_path):
    (tmp_path / "my_oneoff_net.py").write_text(ONE_OFF)
    ns: dict = {}
    exec(ONE_OFF, ns)
    model = ns["build"](3)
    registry.adapt_in_channels(model, 1)
    spec = ModelSpec("my_oneoff_net:build", 3, (1, 16, 16))
    write_model(model.eval(), spec, "safetensors", tmp_path / "m.safetensors", {}, torch.rand(2, 1, 16, 16))

    r = invoke("inspect", tmp_path / "m.safetensors")  # the file alone must not choose code to import
    assert r.exit_code == ExitCode.USAGE
    assert r.stderr == (
        "bdscan: error: m.safetensors: the file names architecture 'my_oneoff_net:build', which is code to "
        "import; bdscan imports code only when you ask: pass --arch my_oneoff_net:build if you trust it\n"
    )
    with pytest.raises(ArchitectureError, match="'bdscan.model.builtin' has no 'nothing'"):
        registry.lookup("bdscan.model.builtin:nothing")
    # the real executable, whose sys.path does not hold the working directory: bdscan adds it for --arch
    p = subprocess.run([str(BDSCAN), "inspect", "m.safetensors", "--format", "json", "--arch", "my_oneoff_net:build"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["spec"]["architecture"] == "my_oneoff_net:build"
