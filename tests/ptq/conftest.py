"""A small real-weight conv net for the recovery tests: EfficientNet-Lite0's stem and first
three MBConv blocks (ImageNet weights: regular, depthwise and pointwise convolutions) with a
seeded 10-way linear head, on real photo crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SIZE = 64


def _head_net():
    import torch
    from torch import nn

    from edgequant_zoo.efficientnet import efficientnet_lite0

    full = efficientnet_lite0()

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.bn, self.act = full._conv_stem, full._bn0, full._swish
            self.blocks = nn.ModuleList(full._blocks[:3])
            torch.manual_seed(0)
            self.fc = nn.Linear(self.blocks[-1]._bn2.num_features, 10)

        def forward(self, x):
            x = self.act(self.bn(self.stem(x)))
            for b in self.blocks:
                x = b(x)
            return self.fc(x.mean((2, 3)))

    return Head().eval()


@pytest.fixture(scope="session")
def effnet_head(tmp_path_factory) -> Path:
    """Path of the float ONNX model (input ``input`` (N, 3, 64, 64), output ``logits``)."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    import torch

    from edgequant_zoo.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("effnet_head") / "head.onnx"
    return export_onnx(_head_net(), path, torch.zeros(1, 3, SIZE, SIZE))


@pytest.fixture(scope="session")
def photos() -> tuple[np.ndarray, np.ndarray]:
    """(calibration, evaluation) real photo crops, disjoint photos, (N, 3, 64, 64)."""
    from edgequant_zoo.photos import calibration_crops, evaluation_crops

    return calibration_crops(32, size=SIZE), evaluation_crops(16, size=SIZE)
