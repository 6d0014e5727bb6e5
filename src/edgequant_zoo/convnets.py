"""Two ≥ 1 M-parameter convnets for MNIST-sized input (N, 1, 28, 28), for benches and tests.

- :class:`VGGNet`: plain 3×3 Conv + BatchNorm + ReLU stacks (32-32-64-64-128-128) with
  max pools, then Linear(6272, 128) + ReLU + Linear(128, 10). ≈ 0.29 M parameters in
  convs, ≈ 0.80 M in the Linears: both weight kinds matter for quantization error.
- :class:`MobileNetLike`: MobileNetV2-style inverted residual blocks (1×1 expand,
  depthwise 3×3, 1×1 project, BN, ReLU6 → ONNX Clip, residual Add), a 1×1 head conv,
  global average pool and Linear. Depthwise convs and residual adds are the classic
  hard cases for int8.
"""

from __future__ import annotations

import torch
from torch import nn

from edgequant_zoo.mnist import MnistSplit
from edgequant_zoo.training import train_classifier

__all__ = ["MobileNetLike", "VGGNet", "count_parameters", "train_quick"]


def count_parameters(module: nn.Module, kinds: tuple[type, ...] = (nn.Module,)) -> int:
    """Number of trainable parameters held directly by submodules of the given kinds."""
    return sum(
        p.numel()
        for m in module.modules()
        if isinstance(m, kinds)
        for p in m.parameters(recurse=False)
        if p.requires_grad
    )


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    # bias=False: BatchNorm's shift makes a conv bias redundant.
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class VGGNet(nn.Module):
    """VGG-style MNIST classifier: ≈ 1.09 M parameters (28×28 → 7×7×128 → 128 → 10)."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn_relu(1, w),
            *_conv_bn_relu(w, w),
            nn.MaxPool2d(2),  # (N, w, 14, 14)
            *_conv_bn_relu(w, 2 * w),
            *_conv_bn_relu(2 * w, 2 * w),
            nn.MaxPool2d(2),  # (N, 2w, 7, 7)
            *_conv_bn_relu(2 * w, 4 * w),
            *_conv_bn_relu(4 * w, 4 * w),  # (N, 4w, 7, 7)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 4w·49)
            nn.Linear(4 * w * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),  # (N, 10) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand + BN + ReLU6, depthwise 3×3 + BN + ReLU6, 1×1 project + BN.

    The residual Add is used when the block keeps both shape and channel count.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.use_residual = stride == 1 and c_in == c_out
        self.block = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),  # linear bottleneck: no activation after the projection
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class MobileNetLike(nn.Module):
    """MobileNetV2-style MNIST classifier: ≈ 1.1 M parameters, 28×28 → 4×4×256 → GAP → 10."""

    # (c_out, stride, expand): the stride-2 stem gives 14×14, then 14 → 7 → 4 spatially.
    # Why a strided stem: depthwise convs are slow in PyTorch on CPU, and full 28×28
    # maps made one training epoch ~6× slower for no accuracy gain on MNIST.
    BLOCKS = (
        (64, 2, 4),
        (64, 1, 4),
        (128, 2, 4),
        (128, 1, 4),
        (256, 1, 4),
        (256, 1, 4),
    )

    def __init__(self, num_classes: int = 10, stem: int = 32, head: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, stem, 3, stride=2, padding=1, bias=False),  # (N, stem, 14, 14)
            nn.BatchNorm2d(stem),
            nn.ReLU6(),
        ]
        c = stem
        for c_out, stride, expand in self.BLOCKS:
            layers.append(InvertedResidual(c, c_out, stride, expand))
            c = c_out
        layers += [nn.Conv2d(c, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU6()]
        self.features = nn.Sequential(*layers)  # (N, head, 4, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)  # (N, head, 1, 1) → ONNX GlobalAveragePool
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))  # (N, 10) logits


def train_quick(
    module: nn.Module, split: MnistSplit, epochs: int = 1, seed: int = 0, lr: float = 3e-3
) -> nn.Module:
    """Briefly train ``module`` on ``split`` so benches can report a meaningful accuracy."""
    return train_classifier(module, split, epochs=epochs, lr=lr, batch_size=64, seed=seed)


def build_seeded(cls: type[nn.Module], seed: int = 0, **kwargs) -> nn.Module:
    """Instantiate ``cls(**kwargs)`` with ``torch.manual_seed(seed)`` without touching global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(**kwargs)
