"""A small MNIST-like CNN exported to ONNX and quantized with onnxruntime's quantizer (QDQ
and QOperator), for end-to-end interpreter tests and the speed benchmark."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx

SEED = 0
INPUT = "x"


def float_cnn() -> onnx.ModelProto:
    """Conv-ReLU-MaxPool ×2, depthwise conv, Sigmoid gate, Add, GAP, Gemm (random weights)."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(1, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.c1(x)), 2)  # (N, 8, 14, 14)
            x = torch.relu(self.c2(x))  # (N, 16, 7, 7)
            x = x + torch.sigmoid(self.dw(x))
            x = torch.flatten(torch.mean(x, dim=(2, 3), keepdim=True), 1)  # (N, 16)
            return self.fc(x)

    buf = io.BytesIO()
    torch.onnx.export(Net().eval(), (torch.zeros(1, 1, 28, 28),), buf, input_names=[INPUT],
                      output_names=["logits"], dynamic_axes={INPUT: {0: "n"}, "logits": {0: "n"}},
                      opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def images(n: int, seed: int = SEED) -> np.ndarray:
    """(n, 1, 28, 28) float32 inputs in [0, 1] with some structure (blurred noise)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28)).astype(np.float32)
    x = (x + np.roll(x, 1, axis=2) + np.roll(x, 1, axis=3)) / 3.0
    return x.astype(np.float32)


def quantized_cnn(tmp: Path, fmt: str = "qdq", per_channel: bool = True) -> onnx.ModelProto:
    """The CNN quantized by ``onnxruntime.quantization.quantize_static`` (u8 act, s8 weight)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT: images(8, seed=s)} for s in range(4)])

        def get_next(self):
            return next(self.batches, None)

    src, dst = tmp / "float.onnx", tmp / f"cnn_{fmt}.onnx"
    onnx.save(float_cnn(), src)
    quantize_static(str(src), str(dst), Reader(),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel)
    return onnx.load(dst)
