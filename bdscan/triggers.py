"""Synthesised triggers as pictures (mask, pattern, and the trigger applied to samples)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import torch

from bdscan.data import save_image
from bdscan.detect import Trigger
from bdscan.fileio import atomic_path


def save_trigger_pngs(trigger: Trigger, folder: Path, stem: str) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    # a warp's pattern is a warped checkerboard and a blend's covers the image, both whole; a mask trigger's pattern
    # matters only under its mask
    pattern = trigger.pattern if trigger.kind in ("warp", "blend") else trigger.pattern * (trigger.mask > 0.05)
    for kind, img in (("mask", trigger.mask), ("pattern", pattern)):
        target = folder / f"{stem}.{kind}.png"
        with atomic_path(target) as tmp:
            save_image(img, tmp)
        out[kind] = str(target)
    return out


def png_base64(img: torch.Tensor) -> str:
    from PIL import Image
    import numpy as np

    a = (img.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype("uint8")
    pil = Image.fromarray(a[0], "L") if a.shape[0] == 1 else Image.fromarray(np.transpose(a[:3], (1, 2, 0)), "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
