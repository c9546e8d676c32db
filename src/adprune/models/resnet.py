"""CIFAR-style ResNet-18/34: 3x3 stride-1 stem, no max-pool, BasicBlocks."""

from __future__ import annotations

import torch
from torch import nn

from adprune.models.vgg import scale_width

BLOCKS: dict[str, list[int]] = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}
STAGE_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two conv3x3-BN units and a residual sum, like torchvision's ``BasicBlock``.

    One ``nn.ReLU`` instance is called twice (after ``bn1`` and after the sum), as torchvision does,
    so activation hooks see two calls per block. The shortcut is a 1x1 conv + BN when stride or
    width changes, else ``nn.Identity``. The residual add is out of place.
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return self.relu(out)


class ResNet(nn.Module):
    """Stem conv3x3-BN-ReLU, four stages of BasicBlocks, global average pool, ``nn.Linear``.

    Stages have widths 64/128/256/512 times ``width`` and strides 1/2/2/2; any input size works.
    """

    def __init__(self, blocks: list[int], *, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        widths = [scale_width(c, width) for c in STAGE_WIDTHS]
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        cin = widths[0]
        stages: list[nn.Sequential] = []
        for i, (n, cout) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(n):
                stage.append(BasicBlock(cin, cout, stride if j == 0 else 1))
                cin = cout
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` images to ``(N, num_classes)`` logits."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


def resnet(name: str, *, in_channels: int, num_classes: int, width: float = 1.0) -> ResNet:
    """Build CIFAR-style ``resnet18`` or ``resnet34``."""
    return ResNet(BLOCKS[name], in_channels=in_channels, num_classes=num_classes, width=width)
