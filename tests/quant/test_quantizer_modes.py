"""Every recipe on small models: valid ONNX, runs in onnxruntime, agrees with onnx.reference,
and holds the structure the recipe promises (dtypes, axes, bias scales, fusion, sharing)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from float_models import cnn_bn, images, mlp_softmax
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator

import edgequant as eq
from edgequant.analysis.metrics import sqnr_db
from edgequant.errors import UnsupportedOpError

#: Output SQNR floors (dB) vs the float model on random-weight models: 8-bit grids give
#: ~6 dB/bit minus accumulated error; int4 weight-only sits near 20 dB.
MIN_SQNR_DB = {"fp32": 120.0, "fp16": 55.0, "w8_dynamic": 30.0, "w8a8": 28.0, "w8a16": 30.0,
               "w4a16_g128": 12.0}
#: onnxruntime runs fused integer kernels while onnx.reference simulates Q/DQ in float;
#: their outputs may differ by rounding of the requantized accumulators: 2 output LSB.
MAX_ORT_VS_REFERENCE_LSB = 2


def ort_run(model: onnx.ModelProto, feeds: dict, nbits_accuracy: str | None = None
            ) -> list[np.ndarray]:
    so = ort.SessionOptions()
    if nbits_accuracy is not None:  # MatMulNBits: 0 = float activations, 4 = int8 (default)
        so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", nbits_accuracy)
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


@pytest.fixture(scope="module")
def float_model() -> onnx.ModelProto:
    return cnn_bn()


@pytest.mark.parametrize("recipe", list(MIN_SQNR_DB))
def test_every_recipe_is_valid_and_close_to_float(float_model, recipe):
    x = images(64)
    qm = eq.quantize(float_model, recipe, calibration={"input": images(128, seed=7)})
    onnx.checker.check_model(qm.model, full_check=True)
    ref = ort_run(float_model, {"input": x})[0]
    got = ort_run(qm.model, {"input": x})[0]
    assert sqnr_db(ref, got) >= MIN_SQNR_DB[recipe]
    ops = [n.op_type for n in qm.model.graph.node]
    assert "BatchNormalization" not in ops  # folded in every mode
    assert {p.key: p.value for p in qm.model.metadata_props}["edgequant.recipe"] == recipe


def test_w8a8_structure(float_model):
    qm = eq.quantize(float_model, "w8a8", calibration={"input": images(128, seed=7)})
    m, t = qm.model, inits(qm.model)
    w = next(v for k, v in t.items() if k.endswith("_quantized") and v.data_type == TensorProto.INT8
             and len(v.dims) == 4)
    assert numpy_helper.to_array(w).min() >= -127  # narrow range: TFLite-compatible weights
    dq_w = next(n for n in m.graph.node if n.input[0] == w.name)
    assert onnx.helper.get_attribute_value(dq_w.attribute[0]) == 0  # per output channel
    # bias: int32, zero point 0, scale = input scale · weight scale (exactly, in float32)
    bias = next(v for v in t.values() if v.data_type == TensorProto.INT32 and v.name.endswith(
        "_quantized"))
    dq_b = next(n for n in m.graph.node if n.input[0] == bias.name)
    q_in = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    s_in = numpy_helper.to_array(t[q_in.input[1]])
    s_w = numpy_helper.to_array(t[dq_w.input[1]])
    np.testing.assert_array_equal(numpy_helper.to_array(t[dq_b.input[1]]),
                                  (np.float32(s_in) * s_w).astype(np.float32))
    # ReLU fused: the conv output is not quantized, the relu output is, with zero point = qmin
    quantized_srcs = {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    relu = next(n for n in m.graph.node if n.op_type == "Relu")
    assert relu.input[0] not in quantized_srcs and relu.output[0] in quantized_srcs
    q_relu = next(n for n in m.graph.node if n.op_type == "QuantizeLinear"
                  and n.input[0] == relu.output[0])
    assert numpy_helper.to_array(t[q_relu.input[2]]) == 0
    # MaxPool / Flatten keep their input's qparams so they run on integers exactly
    pool = next(n for n in m.graph.node if n.op_type == "MaxPool")
    q_pool = next(n for n in m.graph.node if n.op_type == "QuantizeLinear"
                  and n.input[0] == pool.output[0])
    assert numpy_helper.to_array(t[q_pool.input[1]]) == numpy_helper.to_array(t[q_relu.input[1]])


@pytest.mark.parametrize("recipe", ["w8a8", "w8a16", "w4a16_g128", "fp16"])
def test_onnxruntime_matches_onnx_reference(float_model, recipe):
    x = images(16)
    qm = eq.quantize(float_model, recipe, calibration={"input": images(64, seed=3)})
    # onnxruntime fuses DequantizeLinear(int4) → MatMul into MatMulNBits, which by default
    # quantizes activations to int8 inside; accuracy level 0 keeps the float semantics.
    got = ort_run(qm.model, {"input": x}, nbits_accuracy="0")[0]
    want = ReferenceEvaluator(qm.model).run(None, {"input": x})[0]
    if recipe in ("w8a8", "w8a16"):
        q_out = next(n for n in qm.model.graph.node if n.op_type == "QuantizeLinear"
                     and n.input[0] == "logits_float")
        scale = float(numpy_helper.to_array(inits(qm.model)[q_out.input[1]]))
        assert np.max(np.abs(got - want)) <= MAX_ORT_VS_REFERENCE_LSB * scale
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_w4_weights_are_int4_blocked(float_model):
    qm = eq.quantize(float_model, "w4a16_g128")
    int4 = [t for t in qm.model.graph.initializer if t.data_type == TensorProto.INT4]
    assert len(int4) == 2 and all(t.name.endswith("_quantized") for t in int4)
    assert all(len(t.raw_data) == -(-np.prod(t.dims) // 2) for t in int4)  # packed 2 per byte
    blocked = [n for n in qm.model.graph.node if n.op_type == "DequantizeLinear"
               and any(a.name == "block_size" for a in n.attribute)]
    assert {onnx.helper.get_attribute_value(a) for n in blocked for a in n.attribute
            if a.name == "block_size"} == {128}
    assert all(numpy_helper.to_array(t).min() >= -7 for t in int4)


def test_fp16_halves_weight_bytes(float_model):
    qm = eq.quantize(float_model, "fp16")
    assert not [t.name for t in qm.model.graph.initializer if t.data_type == TensorProto.FLOAT]
    f32 = sum(numpy_helper.to_array(t).nbytes for t in eq.quantize(float_model, "fp32")
              .model.graph.initializer if t.data_type == TensorProto.FLOAT)
    f16 = sum(numpy_helper.to_array(t).nbytes for t in qm.model.graph.initializer
              if t.data_type == TensorProto.FLOAT16)
    assert f32 / f16 == pytest.approx(2.0)


@pytest.mark.parametrize("io", ["uint8", "int8"])
def test_integer_io(float_model, io):
    cal = images(128, seed=7)
    qm = eq.quantize(float_model, "w8a8", calibration={"input": cal}, io=io)
    sess = ort.InferenceSession(qm.model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == f"tensor({io})"
    assert sess.get_outputs()[0].type == f"tensor({io})"
    meta = qm.report["io_qparams"]
    s_in, z_in = meta["input"]["scale"], meta["input"]["zero_point"]
    s_out, z_out = meta["logits"]["scale"], meta["logits"]["zero_point"]
    x = images(32)
    xq = np.clip(np.rint(x / np.float32(s_in)) + z_in, *((0, 255) if io == "uint8" else (-128, 127)))
    yq = sess.run(None, {"input": xq.astype(io)})[0]
    float_io = eq.quantize(float_model, "w8a8", calibration={"input": cal})
    y = ort_run(float_io.model, {"input": x})[0]
    # the integer model's dequantized output equals the float-I/O model's output
    np.testing.assert_allclose((yq.astype(np.float32) - z_out) * s_out, y, atol=s_out * 1.01)


def test_strict_names_every_float_op_and_default_lists_reasons():
    model = mlp_softmax()
    cal = {"input": np.random.default_rng(0).normal(size=(8, 4, 32)).astype(np.float32)}
    with pytest.raises(UnsupportedOpError, match=r"erf \(Erf\): no integer kernel for Erf"):
        eq.quantize(model, "w8a8", calibration=cal, strict=True)
    qm = eq.quantize(model, "w8a8", calibration=cal)
    assert qm.report["plan"]["float_nodes"] == [
        {"node": "erf", "op_type": "Erf", "reason": "no integer kernel for Erf"}]
    ort_run(qm.model, cal)  # the mixed model runs


def test_qparams_override_is_used_verbatim(float_model):
    from edgequant.qparams import QParams
    from edgequant.spec import PerTensor, QType

    qp = QParams(np.float32(0.01), np.uint8(3), QType(8, False), PerTensor())
    qm = eq.quantize(float_model, "w8a8", calibration={"input": images(32)},
                     qparams={"input": qp})
    q = next(n for n in qm.model.graph.node if n.op_type == "QuantizeLinear"
             and n.input[0] == "input")
    t = inits(qm.model)
    assert numpy_helper.to_array(t[q.input[1]]) == np.float32(0.01)
    assert numpy_helper.to_array(t[q.input[2]]) == 3


@pytest.mark.parametrize("recipe", ["w8a8", "w4a16_g128"])
def test_matmulnbits_note_only_with_int4_matmul_weights(float_model, recipe):
    qm = eq.quantize(float_model, recipe, calibration={"input": images(64, seed=3)})
    noted = any("MatMulNBits" in n for n in qm.report["notes"])
    int4 = [t for t in qm.model.graph.initializer if t.data_type == TensorProto.INT4]
    assert noted == (recipe == "w4a16_g128") and bool(int4) == noted
