"""Tiny models and helpers shared by the PyTorch front-end tests."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch
from torch import nn


def tiny_cnn() -> nn.Sequential:
    """Conv+BN+ReLU, MaxPool, Conv+ReLU, Flatten, Linear on (N, 1, 8, 8) inputs."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 16, 5),
    )


class _Block(nn.Module):
    """Expand 1×1 + BN + ReLU6, depthwise 3×3 + BN + ReLU6, project 1×1 + BN, residual Add."""

    def __init__(self, c: int, expand: int = 4) -> None:
        super().__init__()
        h = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False),
                                nn.BatchNorm2d(h), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.project(self.dw(self.expand(x)))


class _LiteNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU6())
        self.blocks = nn.Sequential(_Block(8), _Block(8))
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        y = self.blocks(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def lite_net() -> nn.Module:
    """EfficientNet-Lite-like stack on (N, 3, 16, 16): large BN-folded depthwise weights."""
    torch.manual_seed(0)
    net = _LiteNet()
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # EfficientNet-like folded weights: large, uneven
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.05 + 1e-3)
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g))
    return net.eval()


#: onnxruntime's WeightBiasQuantization (optimization level >= BASIC) quantizes, int8 per
#: tensor, the float weight and bias of any Conv/Gemm whose input is dequantized and whose
#: output is quantized again — i.e. the layers of a float region, which the QDQ graph keeps
#: float. Tests of float regions run onnxruntime without it to check what the graph says.
KEEP_FLOAT_WEIGHTS = ("WeightBiasQuantization",)


def run_ort(model, x: np.ndarray, disabled_optimizers: tuple[str, ...] = ()) -> np.ndarray:
    """First output of ``model`` in onnxruntime on CPU (optionally without some optimizers)."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled_optimizers))
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]
