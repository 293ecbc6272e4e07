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

