import numpy as np
import pytest
import torch
from PIL import Image

from bdscan.data import load_samples, read_image
from bdscan.errors import DataError
from bdscan.model import ModelSpec
from tests.conftest import write_samples

GREY = ModelSpec("x", 3, (1, 28, 28))
RGB32 = ModelSpec("x", 3, (3, 32, 32), labels=("cat", "dog", "owl"))


def test_class_folders_by_index(tmp_path):
    write_samples(tmp_path, classes=3, per_class=2)
    s = load_samples(tmp_path, GREY)
    assert s.x.shape == (6, 1, 28, 28)
    assert s.y.tolist() == [0, 0, 1, 1, 2, 2]
    assert 0.0 <= float(s.x.min()) and float(s.x.max()) <= 1.0


def test_class_folders_by_label_name(tmp_path):
    write_samples(tmp_path, shape=(32, 32), by_label=["cat", "dog", "owl"], mode="RGB")
    s = load_samples(tmp_path, RGB32)
    assert sorted(s.y.tolist()) == [0, 0, 1, 1, 2, 2]
    assert s.x.shape[1:] == (3, 32, 32)


def test_grey_to_rgb_and_back(tmp_path):
    arr = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    Image.fromarray(arr, "L").save(tmp_path / "g.png")
    rgb = read_image(tmp_path / "g.png", ModelSpec("x", 2, (3, 28, 28)))
    assert rgb.shape == (3, 28, 28)
    assert np.allclose(rgb[0], arr / 255.0) and np.allclose(rgb[0], rgb[2])
    col = np.zeros((28, 28, 3), dtype=np.uint8)
    col[..., 0] = 255  # pure red -> ITU-R 601 luma 76
    Image.fromarray(col, "RGB").save(tmp_path / "c.png")
    grey = read_image(tmp_path / "c.png", GREY)
    assert grey.shape == (1, 28, 28)
    assert abs(float(grey.mean()) - 76 / 255) < 1e-6


def test_resize(tmp_path):
    Image.fromarray(np.full((64, 48), 200, dtype=np.uint8), "L").save(tmp_path / "big.png")
    a = read_image(tmp_path / "big.png", GREY)
    assert a.shape == (1, 28, 28)
    assert np.allclose(a, 200 / 255.0, atol=1e-6)


def test_sixteen_bit_scaled_not_clipped(tmp_path):
    arr = np.full((28, 28), 32768, dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "16.png")
    a = read_image(tmp_path / "16.png", GREY)
    assert abs(float(a.mean()) - 128 / 255) < 1 / 255


def test_unknown_label_and_out_of_range(tmp_path):
    write_samples(tmp_path, by_label=["cat", "emu", "owl"], shape=(32, 32), mode="RGB")
    with pytest.raises(DataError, match="unknown class folder 'emu'"):
        load_samples(tmp_path, RGB32)
    other = tmp_path / "idx"
    write_samples(other, classes=3)
    (other / "2").rename(other / "7")
    with pytest.raises(DataError, match="'7' is out of range"):
        load_samples(other, GREY)


def test_empty_missing_and_thin(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_samples(tmp_path / "nope", GREY)
    with pytest.raises(DataError, match="has no images"):
        load_samples(tmp_path, GREY)
    write_samples(tmp_path, classes=2, per_class=1)
    with pytest.raises(DataError, match="at least 2 per class"):
        load_samples(tmp_path, GREY)


def test_unlabelled_flat_folder(tmp_path):
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8), "L").save(tmp_path / "t.png")
    s = load_samples(tmp_path, GREY, allow_unlabelled=True)
    assert s.y.tolist() == [-1]
    assert isinstance(s.x, torch.Tensor)
