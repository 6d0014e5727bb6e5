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
