"""Fashion-MNIST loader (IDX format, gzip) with no dependency beyond numpy/torch."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(os.environ.get("BDSCAN_FMNIST_ROOT", "/usr/share/datasets/fashion-mnist"))

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dims
_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dim


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{path}: truncated IDX header")
    got = int.from_bytes(data[0:4], "big")
    if got != magic:
        raise ValueError(f"{path}: bad IDX magic number {got} (expected {magic})")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=header_len)
    if body.size != expected:
        raise ValueError(f"{path}: expected {expected} bytes of data for shape {dims}, found {body.size}")
    return body.reshape(dims).copy()


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a Fashion-MNIST split.

    Returns ``(images, labels)``: images ``uint8`` of shape (N, 28, 28), labels ``int64`` of shape (N,).
    ``split`` is ``"train"`` (60 000 images) or ``"test"`` (10 000 images).
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = Path(root) if root is not None else DEFAULT_ROOT
    img_name, lbl_name = _FILES[split]
    img_path, lbl_path = root / img_name, root / lbl_name
    for p in (img_path, lbl_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST file not found: {p}. Install the data set with "
                f"`apt-get install dataset-fashion-mnist`, or pass root= pointing at the IDX .gz files."
            )
    images = _read_idx(img_path, _IMAGES_MAGIC, 3)
    labels = _read_idx(lbl_path, _LABELS_MAGIC, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def to_tensor(images: np.ndarray, size: int = 28, channels: int = 1):
    """Convert uint8 images (N, H, W) into a float tensor (N, channels, size, size) in [0, 1].

    Resizes bilinearly when ``size`` differs from the input size; ``channels=3`` repeats the grey channel.
    """
    import torch
    import torch.nn.functional as F

    if channels not in (1, 3):
        raise ValueError("channels must be 1 or 3")
    arr = np.asarray(images)
    if arr.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W), got {arr.shape}")
    x = torch.from_numpy(arr.astype(np.float32) / 255.0).unsqueeze(1)
    if size != x.shape[-1] or size != x.shape[-2]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    return x.contiguous()
