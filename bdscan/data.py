"""Samples folder -> labelled tensors in pixel space [0,1], shaped for the model."""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bdscan.errors import DataError
from bdscan.model.spec import ModelSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
MAX_PIXELS = 40_000_000  # larger images are refused as decompression bombs
UNLABELLED = -1


@dataclass(frozen=True)
class Samples:
    x: torch.Tensor  # N,C,H,W float32 in [0,1]
    y: torch.Tensor  # N int64; UNLABELLED where the folder gave no class
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index) -> "Samples":
        index = torch.as_tensor(index, dtype=torch.long)
        return Samples(self.x[index], self.y[index], tuple(self.paths[i] for i in index.tolist()))

    def __add__(self, other: "Samples") -> "Samples":
        return Samples(torch.cat([self.x, other.x]), torch.cat([self.y, other.y]), self.paths + other.paths)

    def of_class(self, k: int) -> "Samples":
        return self.subset(torch.nonzero(self.y == k).flatten())

    def not_class(self, k: int) -> "Samples":
        return self.subset(torch.nonzero(self.y != k).flatten())

    @property
    def labelled(self) -> bool:
        return bool((self.y >= 0).all())


def read_image(path: Path, spec: ModelSpec) -> np.ndarray:
    """One image as a C,H,W float32 array in [0,1], converted to the model's channels and size."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = spec.input_shape
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty image file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(f"{path}: {img.width}x{img.height} image is too large (decompression bomb?)")
                img.load()
                img = _to_mode(img, "L" if c == 1 else "RGB")
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: image is too large (decompression bomb?)") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: corrupt image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    if c == 4:  # RGBA models are rare; pad an opaque alpha
        arr = np.concatenate([arr, np.ones_like(arr[:1])], axis=0)
    return arr


def _to_mode(img, mode: str):
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit: scale to 8-bit ourselves; PIL's convert clips at 255
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "I" or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert(mode)


def _class_index(name: str, spec: ModelSpec, folder: Path) -> int:
    if name.isdigit():
        k = int(name)
        if k < spec.num_classes:
            return k
        raise DataError(f"{folder}: class folder {name!r} is out of range for {spec.num_classes} classes")
    if spec.labels and name in spec.labels:
        return spec.labels.index(name)
    known = f"label names {', '.join(spec.labels)}" if spec.labels else "no label names in the model"
    raise DataError(f"{folder}: unknown class folder {name!r}; use 0..{spec.num_classes - 1} or {known}")


def _images_in(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None
    out = []
    for p in entries:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:  # os.stat, not Path.is_file: that answers False for a symlink loop and hides it
            is_file = stat.S_ISREG(os.stat(p).st_mode)
        except OSError as exc:  # symlink loops, dangling links
            raise DataError(f"{p}: cannot read ({exc.strerror or exc})") from None
        if is_file:
            out.append(p)
    return out


def load_samples(
    root: str | os.PathLike, spec: ModelSpec, *, min_per_class: int = 2, allow_unlabelled: bool = False,
    require_all_classes: bool = False,
) -> Samples:
    """Read ``root/<class>/*.png`` (class by index or label name), or flat images when ``allow_unlabelled``."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"samples folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"samples path {root} is not a folder")
    items: list[tuple[Path, int]] = []
    try:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{root}: cannot list folder ({exc.strerror or exc})") from None
    for sub in subdirs:
        k = _class_index(sub.name, spec, root)
        items += [(p, k) for p in _images_in(sub)]
    if allow_unlabelled:
        items += [(p, UNLABELLED) for p in _images_in(root)]
    if not items:
        raise DataError(
            f"samples folder {root} has no images; expected {root}/<class>/*.png (class index or label name)"
        )
    arrays = [read_image(p, spec) for p, _ in items]
    y = torch.tensor([k for _, k in items], dtype=torch.long)
    labelled = y[y >= 0]
    if len(labelled) and not allow_unlabelled:
        classes = torch.unique(labelled)
        if len(classes) < 2:
            raise DataError(f"samples folder {root} has only one class ({int(classes[0])}); bdscan needs several")
        counts = torch.bincount(labelled, minlength=spec.num_classes)
        thin = [int(k) for k in classes if counts[k] < min_per_class]
        if thin:
            raise DataError(
                f"samples folder {root}: class {thin[0]} has {int(counts[thin[0]])} image(s); "
                f"at least {min_per_class} per class are needed"
            )
        if require_all_classes and len(classes) < spec.num_classes:
            missing = sorted(set(range(spec.num_classes)) - set(classes.tolist()))
            raise DataError(f"samples folder {root} has no images of class(es) {missing[:5]}")
    x = torch.from_numpy(np.stack(arrays))
    return Samples(x, y, tuple(str(p) for p, _ in items))


def save_image(arr: torch.Tensor, path: Path) -> None:
    """Write one C,H,W tensor in [0,1] as PNG (used by the example scripts and tests)."""
    from PIL import Image

    a = (arr.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    img = Image.fromarray(a[0], "L") if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0)[..., :3], "RGB")
    img.save(path, format="PNG")
