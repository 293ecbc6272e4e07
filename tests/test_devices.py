import pytest
import torch
from typer.testing import CliRunner

from bdscan.cli.app import app
from bdscan.devices import autocast, resolve_device, with_backoff
from bdscan.errors import DeviceError, ExitCode, UsageError

HAS_CUDA = torch.cuda.is_available()


def test_auto_picks_what_is_there():
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-CUDA error; this machine has CUDA")
def test_cuda_requested_but_absent():
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda:1")


def test_bad_device_names():
    for name in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(UsageError):
            resolve_device(name)


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-CUDA exit code; this machine has CUDA")
def test_cli_exit_code_without_cuda(cnn_file, tmp_path):
    from tests.conftest import write_samples

    write_samples(tmp_path / "s", classes=10)
    r = CliRunner().invoke(app, ["scan", str(cnn_file[0]), "--samples", str(tmp_path / "s"), "--device", "cuda"])
    assert r.exit_code == ExitCode.RUNTIME, r.output
    assert "no CUDA device" in r.output


def test_backoff_halves_batch_on_oom():
    seen, said = [], []

    def fn(batch):
        seen.append(batch)
        if batch > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return batch

    assert with_backoff(fn, 64, say=said.append) == 8
    assert seen == [64, 32, 16, 8]
    assert said[-1] == "out of GPU memory; retrying with batch size 8"


def test_backoff_gives_up_with_clear_error():
    def fn(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(DeviceError, match="even at batch size 1"):
        with_backoff(fn, 4)


def test_backoff_passes_other_errors():
    def fn(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        with_backoff(fn, 4)


def test_autocast_is_noop_on_cpu():
    with autocast(torch.device("cpu")):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32


def test_full_precision_turns_tf32_off_and_restores_it():
    from bdscan.devices import full_precision

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with full_precision(torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with full_precision(torch.device("cpu")):  # nothing to change on the CPU
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved



def _cnn_with_stats():
    from bdscan.model.builtin import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(10, 1)
    for m in model.modules():  # running statistics away from 0/1, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


def test_inference_copy_folds_batchnorm_and_keeps_the_function():
    from bdscan.devices import inference_copy

    model = _cnn_with_stats()  # left in training mode with gradients on: the copy must not change that
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 1, 28, 28)
    fast = inference_copy(model, x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert not any(p.requires_grad for p in fast.parameters())
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with torch.no_grad():
        assert torch.allclose(fast(x[:4]), model.eval()(x[:4]), atol=1e-4)


def test_inference_copy_of_an_untraceable_model_is_a_plain_copy():
    from bdscan.devices import inference_copy

    class Branchy(torch.nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.inner = _cnn_with_stats()

        def forward(self, x):
            return self.inner(x) if float(x.mean()) > 0.5 else -self.inner(x)

    model = Branchy().eval()
    x = torch.rand(8, 1, 28, 28)
    fast = inference_copy(model, x)
    assert fast is not model and any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    with torch.no_grad():
        for xs in (x, x + 0.5):  # both branches; channels_last may round differently
            assert torch.allclose(fast(xs), model(xs), atol=1e-5)


def test_keep_freed_memory_without_a_c_library_does_nothing(monkeypatch):
    import ctypes.util

    from bdscan.devices import keep_freed_memory

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "/nonexistent/libc-none.so")
    keep_freed_memory()  # OSError from loading it is swallowed: the CLI still starts
