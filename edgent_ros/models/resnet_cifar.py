"""
A small residual classifier for 64x64 RGB frames (CIFAR-10 upsampled), plain torch.

ResNet-style: a stride-2 3x3 stem, four stages of two BasicBlocks with ``width * (1, 2, 4, 8)``
channels (stages 2-4 halve the resolution), global average pooling and a linear head. At
``width=16`` a 64x64 frame costs about 36 MMAC (convolutions and the linear layer). The forward
pass has no data-dependent control flow, so ``torch.fx.symbolic_trace`` traces it; every stage
is an ``nn.Sequential`` so a split can be placed between stages or blocks.
"""

from __future__ import annotations

import torch
from torch import nn

# Per-channel RGB mean/std of the CIFAR-10 JPEG training set (same as edgent_ros.core.arch).
MEAN = (0.4913, 0.4821, 0.4465)
STD = (0.2452, 0.2428, 0.2606)
INPUT_SIZE = 64
BLOCKS_PER_STAGE = (2, 2, 2, 2)


def resnet_cifar64_mean_std():
    """Return the ``(mean, std)`` RGB tuples the inputs are normalized with (values in [0, 1])."""
    return MEAN, STD


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    """Return conv (no bias) + batch norm; 'same' padding for odd kernels."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = _conv_bn(c_in, c_out, 1, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetCifar64(nn.Module):
    """Stem, ``layer1``-``layer4`` (BasicBlock stages), ``pool`` and ``fc``."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError(f'num_classes and width must be >= 1, got {num_classes}, {width}')
        self.num_classes = num_classes
        self.width = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True))
        chans = [width * m for m in (1, 2, 4, 8)]
        c_in = width
        for i, (c, n) in enumerate(zip(chans, BLOCKS_PER_STAGE)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c_in, c, stride)] + [BasicBlock(c, c) for _ in range(n - 1)]
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
            c_in = c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # zero-init the last BN of each residual branch
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, num_classes)`` for normalized images ``(N, 3, 64, 64)``."""
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def resnet_cifar64(num_classes: int = 10, width: int = 16) -> nn.Module:
    """Return a randomly initialized :class:`ResNetCifar64` for 64x64 RGB input."""
    return ResNetCifar64(num_classes=num_classes, width=width)
