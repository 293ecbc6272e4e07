"""bdscan's own small architectures (the bundled example uses ``bdscan.small_cnn``)."""

from __future__ import annotations

from torch import nn

from bdscan.model.registry import register


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU stages and a two-layer head; ~0.2M parameters."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 32):
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.features = nn.Sequential(
            stage(in_channels, width),
            nn.MaxPool2d(2),
            stage(width, 2 * width),
            nn.MaxPool2d(2),
            stage(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * width, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class VGGStyle(nn.Module):
    """A VGG-style net (two convs per stage) for 28 to 64 pixel inputs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in (width, 2 * width, 4 * width):
            for _ in range(2):
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin, 256), nn.ReLU(), nn.Linear(256, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@register("bdscan.small_cnn")
def small_cnn(num_classes: int) -> nn.Module:
    return SmallCNN(num_classes)


@register("bdscan.vgg_small")
def vgg_small(num_classes: int) -> nn.Module:
    return VGGStyle(num_classes)
