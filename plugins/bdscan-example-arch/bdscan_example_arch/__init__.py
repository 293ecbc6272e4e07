"""A small custom classifier, exposed to bdscan as ``example.tinynet`` and ``example.tinynet_wide``.

bdscan calls ``build(num_classes)`` and loads the weights of a safetensors file into what it returns, so
the module's ``state_dict()`` keys and shapes must match the ones the model was trained and saved with.
Build for 3 input channels: bdscan replaces the first convolution for greyscale (or RGBA) models.
"""

from __future__ import annotations

from torch import nn

__all__ = ["TinyNet", "tinynet", "tinynet_wide"]


class TinyNet(nn.Module):
    """Two conv blocks and a linear head; works at any input size from 8x8 up (global pooling)."""

    def __init__(self, num_classes: int, width: int = 16, in_channels: int = 3):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(block(in_channels, width), block(width, 2 * width), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def tinynet(num_classes: int) -> nn.Module:
    return TinyNet(num_classes)


def tinynet_wide(num_classes: int) -> nn.Module:
    return TinyNet(num_classes, width=32)
