"""A small MobileNet-style CNN for MNIST, written the way people write them (not Sequential).

Conv–BN–ReLU6 stem, MaxPool, inverted-residual blocks (1×1 expand, depthwise 3×3, optional
squeeze-and-excitation with Sigmoid · Mul, 1×1 linear projection, residual Add), a 1×1 head
conv, adaptive average pool, Flatten, Linear. Activations are ``torch.nn.functional`` calls
inside ``forward`` — the case the module-swap QAT could not fuse. ≈ 60 k parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    """``x · sigmoid(W2 relu(W1 mean(x)))`` per channel (MobileNetV3's SE, with Sigmoid)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)  # (N, C, 1, 1)
        s = torch.sigmoid(self.expand(F.relu(self.reduce(s))))  # (N, C, 1, 1)
        return x * s


class Block(nn.Module):
    """Inverted residual: expand → depthwise → (SE) → project, plus x when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int, se: bool) -> None:
        super().__init__()
        hidden = c_in * expand
        self.expand = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.se = SqueezeExcite(hidden, max(4, hidden // 4)) if se else None
        self.project = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.expand(x)))  # (N, hidden, H, W)
        y = F.relu6(self.bn2(self.depthwise(y)))  # (N, hidden, H/s, W/s)
        if self.se is not None:
            y = self.se(y)
        y = self.bn3(self.project(y))  # (N, c_out, H/s, W/s) linear bottleneck
        return x + y if self.residual else y


class MobileNetStyle(nn.Module):
    """28×28×1 → 10 logits: stem 14×14 (MaxPool) → 7×7 → 4×4 → GAP → Linear."""

    # (c_out, stride, expand, squeeze-excite)
    BLOCKS = ((24, 2, 3, False), (24, 1, 3, True), (40, 2, 3, False), (40, 1, 3, True))

    def __init__(self, num_classes: int = 10, stem: int = 16, head: int = 96) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, stem, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        blocks, c = [], stem
        for c_out, stride, expand, se in self.BLOCKS:
            blocks.append(Block(c, c_out, stride, expand, se))
            c = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c, head, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(head)
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(F.relu6(self.stem_bn(self.stem(x))), 2)  # (N, 16, 14, 14)
        for block in self.blocks:
            y = block(y)
        y = F.relu6(self.head_bn(self.head(y)))  # (N, head, 4, 4)
        y = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)  # (N, head)
        return self.fc(y)  # (N, 10) logits
