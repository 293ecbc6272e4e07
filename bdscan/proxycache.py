"""On-disk cache of the carry rule's proxy models (bdscan.detect.train_proxies).

Proxies depend on the samples, their labels, the class count and the settings alone, never on the model scanned, and
are trained from fixed seeds: a CI job or pre-commit hook that scans model after model against one samples folder
trains the same three small CNNs each time (about a third of a small-CNN scan). They are kept here as safetensors
(no pickle), keyed by a digest of everything that makes them what they are, and loaded instead of trained.

``BDSCAN_CACHE_DIR`` sets the folder (default ``$XDG_CACHE_HOME/bdscan`` or ``~/.cache/bdscan``); ``off`` (or an
empty value) turns the cache off. A cache that cannot be read or written is passed over: the proxies are trained, as
without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import torch
from torch import nn

FORMAT = "bdscan-proxies-1"  # bumped when what a file holds, or how proxies are built, changes
KEEP = 32  # files kept (three proxies of ~111k parameters: about 1.3 MB); the least recently used go first


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is off."""
    value = os.environ.get("BDSCAN_CACHE_DIR")
    if value is not None:
        return None if value.strip() in ("", "off") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bdscan"


def key(x: torch.Tensor, y: torch.Tensor, num_classes: int, settings) -> str:
    """Digest of what the proxies are a function of. bdscan's version stands for the code that trains them; the torch
    version and device type are in it because float order differs between them, and so would the proxies."""
    h = hashlib.sha256()
    from bdscan import __version__

    about = [FORMAT, __version__, torch.__version__, x.device.type, str(num_classes), str(tuple(x.shape)),
             repr(sorted(dataclasses.asdict(settings).items()))]
    h.update("\0".join(about).encode())
    h.update(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(y.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def _path(folder: Path, digest: str) -> Path:
    return folder / f"proxies-{digest[:40]}.safetensors"


def load(digest: str, build, count: int, device, layout) -> list[nn.Module] | None:
    """The cached proxies for ``digest`` (``build()`` makes an untrained one), or None: not cached, unreadable, or not
    what was stored under this key."""
    folder = cache_dir()
    if folder is None:
        return None
    path = _path(folder, digest)
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != digest:
                return None
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        models = []
        for i in range(count):
            prefix = f"{i}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            with torch.random.fork_rng(devices=[]):  # a model built to be overwritten must not move the global RNG
                m = build()
            m.load_state_dict(state, strict=True)
            models.append(m.to(device, memory_format=layout).eval())
        if len(tensors) != sum(len(m.state_dict()) for m in models):
            return None
        os.utime(path)  # recently used: pruned last
        return models
    except Exception:  # a damaged or foreign file: train instead (it is replaced after)
        return None


def save(digest: str, models: list[nn.Module]) -> bool:
    """Store ``models`` under ``digest``; False where the cache is off or cannot be written (nothing half-written)."""
    folder = cache_dir()
    if folder is None:
        return False
    try:
        from safetensors.torch import save_file

        from bdscan.fileio import atomic_path

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"{i}.{k}": v.detach().to("cpu").contiguous() for i, m in enumerate(models)
                   for k, v in m.state_dict().items()}
        with atomic_path(_path(folder, digest)) as tmp:
            save_file(tensors, str(tmp), metadata={"key": digest, "format": FORMAT})
        _prune(folder)
        return True
    except Exception:  # a read-only home, a full disk: the scan goes on without the cache
        return False


def _prune(folder: Path) -> None:
    files = sorted(folder.glob("proxies-*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[KEEP:]:
        old.unlink(missing_ok=True)
