"""A squeeze-and-excitation network's eval forward equals LiteRT and onnxruntime bit for bit.

The SE block (GlobalAveragePool → Conv → Relu → Conv → Sigmoid → Mul) runs on LiteRT as
LOGISTIC onto its fixed 1/256 grid, a QUANTIZE to the ONNX sigmoid grid (two roundings) and
XNNPACK's fp32-requantized MUL; on onnxruntime as QLinearSigmoid (MLAS logistic table) and
QLinearMul. Without those emulated, fake quant was 1–2 LSB off LiteRT on ~half the sigmoid
codes and up to 3 LSB off on the logits of the MobileNet-style model
(``bench/qat.py --arch mobilenet``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import capture, qat_from_capture
from edgequant.torch.graph_convert import convert_graph
from edgequant.torch.integer_sim import IntegerSim
from edgequant_zoo.mobilenet_style import MobileNetStyle

X = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(3))  # (N, 1, 28, 28)


@pytest.fixture(scope="module")
def se_cap():
    torch.manual_seed(0)
    return capture(MobileNetStyle().eval(), X[:2])


def _eval(qat, kernels: str | None) -> np.ndarray:
    qat.eval()
    qat.kernels = kernels
    with torch.no_grad():
        return np.concatenate([qat(X[s:s + 32]).numpy() for s in range(0, len(X), 32)])


def _run(runner, x: np.ndarray, batch: int) -> np.ndarray:
    name = runner.input_names[0]
    return np.concatenate([np.asarray(runner.run({name: x[s:s + batch]})[0])
                           for s in range(0, len(x), batch)])


def _lsb(qat) -> float:
    return float(qat.activation_qparams()[qat.output_names[0]].scale)


def test_sigmoid_and_mul_are_emulated(se_cap):
    qat = qat_from_capture(se_cap, get_recipe("w8a8"), calibration=X[:32])
    sim = IntegerSim(qat, "litert")
    se_nodes = [n for n in qat.nodes if n.op_type in ("Sigmoid", "Mul")]
    assert {n.op_type for n in se_nodes} == {"Sigmoid", "Mul"}
    assert all(sim.output_grid(n.outputs[0]) is not None for n in se_nodes)


@pytest.mark.parametrize("recipe", ["w8a8", "w4a8"])
def test_litert_kernels_equal_litert_bit_for_bit(se_cap, recipe, tmp_path):
    pytest.importorskip("ai_edge_litert")
    qat = qat_from_capture(se_cap, get_recipe(recipe), calibration=X[:32])
    got = _run(open_runner(convert_graph(qat).save(tmp_path / "m.tflite")), X.numpy(), 16)
    fq = _eval(qat, "litert")
    assert np.array_equal(fq, got), f"max {np.max(np.abs(fq - got)) / _lsb(qat):.1f} LSB"


def test_onnxruntime_kernels_equal_onnxruntime_bit_for_bit(se_cap):
    """w8a8 (int4 convs run on onnxruntime as DQ → float Conv, not emulated bit for bit)."""
    qat = qat_from_capture(se_cap, get_recipe("w8a8"), calibration=X[:32])
    got = _run(open_runner(convert_graph(qat).model), X.numpy(), 64)
    fq = _eval(qat, "onnxruntime")
    assert np.array_equal(fq, got), f"max {np.max(np.abs(fq - got)) / _lsb(qat):.1f} LSB"
