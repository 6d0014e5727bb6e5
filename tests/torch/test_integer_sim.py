"""GraphQAT's eval forward equals the converted model bit for bit (onnxruntime the oracle).

The model is an EfficientNet-Lite block stack with the structure that broke plain fake
quantization on EfficientNet-Lite0: BN-folded depthwise convs with large per-channel weights
(tiny BN variances), Conv + ReLU6 fused into one grid, a residual Add, GlobalAveragePool,
Flatten and a Linear head. A float32 convolution of the dequantized values differs from the
exact int32 accumulator by a few ULPs; where that crosses a rounding boundary plain fake quant
and onnxruntime's QLinearConv disagree by an LSB, and the following large-weight layers
amplify it (measured: up to 7 LSB of the EfficientNet-Lite0 logits, 3 % of top-1 predictions).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_models import lite_net, run_ort

from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import capture, qat_from_capture
from edgequant.torch.graph_convert import convert_graph
from edgequant.torch.integer_sim import IntegerSim

X = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def lite_cap():
    return capture(lite_net(), X[:2])


def _eval(qat, x: torch.Tensor) -> np.ndarray:
    qat.eval()
    with torch.no_grad():
        return qat(x).numpy()


@pytest.mark.parametrize("recipe", ["w8a8", "w4a8"])
def test_eval_forward_equals_onnxruntime_bit_for_bit(lite_cap, recipe):
    qat = qat_from_capture(lite_cap, get_recipe(recipe), calibration=X[:32])
    result = convert_graph(qat)
    ort_y = run_ort(result.model, X.numpy())  # (64, 10) float32, optimized: QLinearConv etc.
    fq = _eval(qat, X)
    lsb = float(qat.activation_qparams()[qat.output_names[0]].scale)
    assert np.array_equal(fq, ort_y), f"max {np.max(np.abs(fq - ort_y)) / lsb:.1f} LSB"
    ref = open_runner(result.model, "reference")  # the interpreter agrees as well
    ref_y = np.asarray(ref.run({ref.input_names[0]: X[:8].numpy()})[0])
    assert np.array_equal(fq[:8], ref_y)


@pytest.mark.parametrize("recipe", ["w8a8", "w4a8"])
def test_litert_kernels_equal_litert_bit_for_bit(lite_cap, recipe, tmp_path):
    """``kernels="litert"``: XNNPACK's ADD and the exporter's AVERAGE_POOL_2D + QUANTIZE head
    (plain fake quant and the onnxruntime kernels are 4 LSB off on most logits here)."""
    pytest.importorskip("ai_edge_litert")
    qat = qat_from_capture(lite_cap, get_recipe(recipe), calibration=X[:32])
    runner = open_runner(convert_graph(qat).save(tmp_path / "m.tflite"))
    got = np.concatenate([np.asarray(runner.run({runner.input_names[0]: X[s:s + 16].numpy()})[0])
                          for s in range(0, len(X), 16)])  # (64, 10) float32
    qat.kernels = "litert"
    fq = _eval(qat, X)
    lsb = float(qat.activation_qparams()[qat.output_names[0]].scale)
    assert np.array_equal(fq, got), f"max {np.max(np.abs(fq - got)) / lsb:.1f} LSB"


def test_emulated_nodes_and_gradients(lite_cap):
    """Every Conv / Add / GAP / Gemm of the model is emulated; training keeps float gradients."""
    qat = qat_from_capture(lite_cap, get_recipe("w8a8"), calibration=X[:32])
    qat.eval()
    sim = IntegerSim(qat)
    outs = {n.label: sim.output_grid(n.outputs[0]) for n in qat.nodes
            if n.op_type in ("Conv", "Add", "GlobalAveragePool", "Gemm")}
    assert outs and all(g is not None for g in outs.values()), outs
    x = X[:4].clone().requires_grad_(True)
    qat(x).sum().backward()  # eval forward with the straight-through substitution
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    qat.kernels = None  # plain fake quant: the same values up to an LSB flip here and there
    plain = _eval(qat, X)
    qat.kernels = "onnxruntime"
    exact = _eval(qat, X)
    assert np.max(np.abs(plain - exact)) <= 8 * float(
        qat.activation_qparams()[qat.output_names[0]].scale)


def test_unknown_kernels_mode_is_an_error(lite_cap):
    qat = qat_from_capture(lite_cap, get_recipe("w8a8"), calibration=X[:32])
    qat.kernels = "tflm"
    qat.eval()
    with pytest.raises(ValueError, match="kernels"):
        qat(X[:2])
