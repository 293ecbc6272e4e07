"""Pixel-space wrapper: bdscan works on images in [0,1]; the model may expect normalised input."""

from __future__ import annotations

import torch
from torch import nn

from bdscan.model.spec import ModelSpec


class Normalized(nn.Module):
    """``model((x - mean) / std)`` for x in [0,1]; the wrapped model is shared, not copied."""

    def __init__(self, model: nn.Module, spec: ModelSpec):
        super().__init__()
        self.model = model
        c = spec.channels
        mean = torch.tensor(spec.mean if spec.mean is not None else [0.0] * c).view(1, c, 1, 1)
        std = torch.tensor(spec.std if spec.std is not None else [1.0] * c).view(1, c, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.identity = spec.mean is None and spec.std is None

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity else (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalise(x))
