"""A trained whole-graph QAT MobileNet-style CNN (depthwise, ReLU6, residual Add, SE Sigmoid·Mul,
MaxPool, GAP, Flatten, Linear) exported as QDQ, QOperator and .tflite in each recipe: every
runtime reproduces the fake-quant logits (onnxruntime, reference interpreter, LiteRT)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import capture, qat_from_capture
from edgequant_zoo.mobilenet_style import MobileNetStyle

X = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def cap():
    torch.manual_seed(0)
    return capture(MobileNetStyle().eval(), X[:2])


def _trained(cap, recipe: str):
    qat = qat_from_capture(cap, get_recipe(recipe), calibration=X)
    eqt.fit_qat(qat, [(X[:16], Y[:16]), (X[16:], Y[16:])], lr=1e-3, show_progress=False)
    qat.eval()
    with torch.no_grad():
        fq = qat(X).numpy()
    return qat, fq


def _run(path_or_model, engine=None) -> np.ndarray:
    runner = open_runner(path_or_model, engine)
    return np.asarray(runner.run({runner.input_names[0]: X.numpy()})[0])


@pytest.mark.parametrize("recipe", ["w8a8", "w4a8", "w8a16"])
def test_every_format_reproduces_training(cap, recipe, tmp_path):
    qat, fq = _trained(cap, recipe)
    lsb = float(qat.activation_qparams()[qat.output_names[0]].scale)
    result = eqt.convert(qat)
    got = {"qdq": _run(result.model),
           "qop": _run(result.save(tmp_path / "m_qop.onnx", format="qop")),
           "qop/reference": _run(tmp_path / "m_qop.onnx", "reference"),
           "tflite": _run(result.save(tmp_path / "m.tflite"))}  # w8a16: LiteRT's 16x8 mode
    for name, y in got.items():
        assert np.max(np.abs(y - fq)) <= 2.01 * lsb, (name, np.max(np.abs(y - fq)) / lsb)
        assert np.mean(y.argmax(1) == fq.argmax(1)) >= 0.95, name
