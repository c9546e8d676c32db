"""CIFAR-style VGG with batch normalisation and a single linear classifier."""

from __future__ import annotations

import torch
from torch import nn

# "M" is a 2x2 max-pool; integers are the output channels of a conv3x3-BN-ReLU unit.
CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ],
}  # fmt: skip


def scale_width(channels: int, width: float) -> int:
    """Return ``channels * width`` rounded half up, and at least 1."""
    return max(1, int(channels * width + 0.5))


class VGG(nn.Module):
    """VGG feature stack, global average pool, flatten, one ``nn.Linear`` classifier.

    Each stage is conv3x3 (no bias) - BatchNorm - ReLU units followed by a 2x2 max-pool with
    ``ceil_mode=True``, which equals the standard pool on even sizes (32, 64) and keeps odd ones
    (28) from shrinking to zero. The adaptive pool makes any input size >= 1 work.
    """

    def __init__(self, cfg: list[int | str], *, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                cout = scale_width(int(item), width)
                layers += [
                    nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(),
                ]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` images to ``(N, num_classes)`` logits."""
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg(name: str, *, in_channels: int, num_classes: int, width: float = 1.0) -> VGG:
    """Build ``vgg11``/``vgg13``/``vgg16``/``vgg19`` (configurations A, B, D, E) with BatchNorm."""
    return VGG(CFGS[name], in_channels=in_channels, num_classes=num_classes, width=width)
