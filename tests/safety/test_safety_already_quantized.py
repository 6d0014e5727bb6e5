"""Already-quantized inputs are refused with a reason, or requantized on purpose."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from float_models import cnn_bn
from safety_cli import assert_one_line_error, images, invoke, snapshot

from edgequant.export import lower_model
from edgequant.graph.already_quantized import (
    AlreadyQuantizedError,
    dequantize_model,
    find_quantized,
)
from edgequant.ptq.quantizer import quantize


def run_ort(model, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()  # MatMulNBits with float activations (int4 weights exact)
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def quantized():
    """The float CNN and what edgequant itself made of it, per recipe."""
    cal = {"input": images(16)}
    out = {r: quantize(cnn_bn(), r, cal if r == "w8a8" else None)
           for r in ("w8a8", "fp16", "w4a16_g128", "w8_dynamic")}
    out["qop"] = lower_model(out["w8a8"])
    return out


def test_float_model_is_not_flagged():
    assert find_quantized(cnn_bn()) == []


@pytest.mark.parametrize(("recipe", "kind"), [("w8a8", "qdq"), ("fp16", "fp16 weights"),
                                              ("w4a16_g128", "integer weights"),
                                              ("w8_dynamic", "qoperator"), ("qop", "qoperator")])
def test_quantized_inputs_are_refused_naming_a_node(quantized, recipe, kind):
    m = quantized[recipe] if recipe == "qop" else quantized[recipe].model
    kinds = {f.kind for f in find_quantized(m)}
    assert kind in kinds
    with pytest.raises(AlreadyQuantizedError, match=r"already quantized .*first: node '.+'"):
        quantize(m, "w8a8", {"input": images(4)})


def test_requantize_a_qdq_model_edgequant_made(quantized):
    """The old AssertionError ('initializer name is not unique') is gone: the weights are
    dequantized, the activation Q/DQ pairs dropped, and the model quantized again."""
    x = images(8)
    q2 = quantize(quantized["w8a8"].model, "w8a8", {"input": images(16)}, requantize=True)
    assert any("already quantized" in w for w in q2.report["warnings"])
    ref, once, twice = (run_ort(m, x) for m in (cnn_bn(), quantized["w8a8"].model, q2.model))
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - twice) ** 2))
    assert sqnr > 20, sqnr  # still a faithful w8a8 model of the float original
    assert np.argmax(twice, 1).tolist() == np.argmax(once, 1).tolist()


def test_dequantized_weight_only_model_computes_like_it(quantized):
    """Folding DequantizeLinear(int4 blocks) into float weights changes nothing: the float
    model runs like the weight-only one (onnxruntime is the oracle)."""
    x = images(8)
    m = quantized["w4a16_g128"].model
    flat, folded, pairs = dequantize_model(m)
    assert find_quantized(flat) == [] and folded >= 2 and pairs == 0
    np.testing.assert_allclose(run_ort(flat, x), run_ort(m, x), rtol=1e-5, atol=1e-5)


def test_qoperator_cannot_be_requantized(quantized):
    with pytest.raises(AlreadyQuantizedError, match=r"cannot requantize: node .*QLinear"):
        quantize(quantized["qop"], "w8a8", {"input": images(4)}, requantize=True)


def test_cli_refuses_then_requantizes(work):
    assert invoke("quantize", work / "model.onnx", "-o", work / "q.onnx", "--calibration",
                  work / "cal.npz", "--no-speed-check").exit_code == 0
    before = snapshot(work)
    res = invoke("quantize", work / "q.onnx", "-o", work / "q2.onnx", "--calibration",
                 work / "cal.npz", "--no-speed-check")
    assert_one_line_error(res, "already quantized", "--requantize")
    assert snapshot(work) == before
    res = invoke("quantize", work / "q.onnx", "-o", work / "q2.onnx", "--calibration",
                 work / "cal.npz", "--no-speed-check", "--requantize")
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert "already quantized" in res.stdout and (work / "q2.onnx").is_file()
