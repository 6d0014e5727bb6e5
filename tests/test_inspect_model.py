"""inspect_model: quantization tables read back against the model files themselves.

Oracles: the QDQ model's own initializers (read with onnx.numpy_helper), the op list
counted here, and for .tflite LiteRT's interpreter (``get_tensor_details``), which decodes
the flatbuffer independently of our schema walk.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from rich.console import Console

from edgequant.inspect.model import describe_values, inspect_model, model_file_bytes

C_OUT = 6


class _Reader(CalibrationDataReader):
    def __init__(self, x):
        self.it = iter([{"x": x[i : i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


@pytest.fixture(scope="module")
def qdq_conv(tmp_path_factory):
    """Conv(1→6, 3×3) → Relu → Flatten → Gemm(10), QDQ per-channel int8 by onnxruntime."""
    rng = np.random.default_rng(0)
    g = h.make_graph(
        [h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c"], ["r"]),
         h.make_node("Flatten", ["r"], ["f"]),
         h.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)],
        "conv",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [nh.from_array(rng.normal(0, 0.5, (C_OUT, 1, 3, 3)).astype(np.float32), "w"),
         nh.from_array(rng.normal(0, 0.1, C_OUT).astype(np.float32), "b"),
         nh.from_array(rng.normal(0, 0.1, (10, C_OUT * 64)).astype(np.float32), "w2"),
         nh.from_array(np.zeros(10, np.float32), "b2")],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    m.ir_version = 10
    d = tmp_path_factory.mktemp("inspect")
    onnx.save(m, d / "f.onnx")
    x = rng.uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    quantize_static(str(d / "f.onnx"), str(d / "q.onnx"), _Reader(x),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    return d / "q.onnx"


def _conv_weight_dq(model):
    consts = {t.name: nh.to_array(t) for t in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])
    assert dq.op_type == "DequantizeLinear"
    return dq, consts


def test_per_channel_conv_weight_scales_equal_initializers(qdq_conv):
    model = onnx.load(qdq_conv)
    dq, consts = _conv_weight_dq(model)
    s = inspect_model(qdq_conv)
    by_name = {q.name: q for q in s.quantized}
    w = by_name[dq.input[0]]
    np.testing.assert_array_equal(w.scale, consts[dq.input[1]])
    np.testing.assert_array_equal(w.zero_point, consts[dq.input[2]])
    assert w.scale.shape == (C_OUT,)
    assert w.dtype == "int8" and w.axis == 0 and w.constant and w.block_size is None
    # the activation entering the Conv: per tensor uint8, written by Q and read by DQ
    q_x = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    act = by_name[q_x.output[0]]
    assert act.dtype == "uint8" and act.axis is None and act.scale.shape == ()
    assert act.scale == consts[q_x.input[1]] and not act.constant
    assert sorted(act.ops) == ["DequantizeLinear", "QuantizeLinear"]


def test_ops_io_params_and_sizes(qdq_conv):
    model = onnx.load(qdq_conv)
    s = inspect_model(qdq_conv)
    assert s.op_counts == dict(Counter(n.op_type for n in model.graph.node))
    assert s.parameter_bytes == sum(nh.to_array(t).nbytes for t in model.graph.initializer)
    assert s.file_bytes == model_file_bytes(qdq_conv) == qdq_conv.stat().st_size
    assert [(t.name, t.dtype, t.shape) for t in s.inputs] == [("x", "float32", [1, 1, 8, 8])]
    assert s.opset == {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
    d = json.loads(json.dumps(s.to_dict()))  # JSON-able, full arrays
    dq, consts = _conv_weight_dq(model)
    w = next(q for q in d["quantized"] if q["name"] == dq.input[0])
    assert w["scale"] == consts[dq.input[1]].tolist()


def test_rich_rendering_shows_per_channel_summary(qdq_conv):
    s = inspect_model(qdq_conv)
    console = Console(record=True, width=250)
    for r in s.to_rich():
        console.print(r)
    text = console.export_text()
    assert f"{C_OUT}× [" in text and "DQ,Q" in text


def test_describe_values():
    assert describe_values(np.float32(0.5)) == "0.5"
    assert describe_values(None) == "dynamic"
    assert describe_values(np.array([0.1, 0.2, 0.3, 0.4, 0.05])) == "5× [0.1, 0.2, 0.3, …] 0.05..0.4"
    assert describe_values(np.zeros(6, np.int8)) == "0 (all 6)"


def test_qoperator_model_lists_qlinear_scales(qdq_conv):
    """Lowered QLinearConv keeps the same per-channel weight scales as the QDQ model."""
    from edgequant.export.qop.lower import lower_to_qop

    model = onnx.load(qdq_conv)
    dq, consts = _conv_weight_dq(model)
    qop = lower_to_qop(model)
    p = qdq_conv.parent / "qop.onnx"
    onnx.save(qop, p)
    s = inspect_model(p)
    assert s.op_counts.get("QLinearConv") == 1
    conv = next(q for q in s.quantized if "QLinearConv" in q.ops and q.axis == 0)
    np.testing.assert_array_equal(conv.scale, consts[dq.input[1]])


def test_bad_suffix():
    with pytest.raises(ValueError, match=r"\.tflite"):
        inspect_model("model.pt")


@pytest.fixture(scope="module")
def tflite_int8(qdq_conv):
    """The QDQ model exported by edgequant's TFLite exporter, integer int8 I/O."""
    pytest.importorskip("ai_edge_litert")
    from edgequant.export.tflite.export import export_tflite

    p = qdq_conv.parent / "q_int8io.tflite"
    export_tflite(qdq_conv, p, io="int8")
    return p


def test_tflite_quantization_matches_litert(tflite_int8):
    from ai_edge_litert.interpreter import Interpreter

    s = inspect_model(tflite_int8)
    assert s.format == "tflite" and s.file_bytes == tflite_int8.stat().st_size
    it = Interpreter(model_path=str(tflite_int8))
    want = {}
    for d in it.get_tensor_details():
        qp = d["quantization_parameters"]
        if len(qp["scales"]):
            want[d["name"]] = (np.dtype(d["dtype"]).name, qp["scales"], qp["zero_points"],
                               qp["quantized_dimension"] if len(qp["scales"]) > 1 else None)
    got = {q.name: q for q in s.quantized}
    assert set(got) == set(want)
    for name, (dtype, scales, zps, axis) in want.items():
        q = got[name]
        assert q.dtype == dtype
        np.testing.assert_array_equal(q.scale.reshape(-1), scales)
        np.testing.assert_array_equal(q.zero_point.reshape(-1), zps)
        assert q.axis == axis
    per_channel = [q for q in s.quantized if q.axis is not None and q.dtype == "int8"]
    assert {q.scale.size for q in per_channel} == {C_OUT, 10}  # conv and fully-connected
    assert s.op_counts.get("CONV_2D") == 1 and s.op_counts.get("FULLY_CONNECTED") == 1
    assert [t.dtype for t in s.inputs] == ["int8"]


def test_tflite_runners_io_quant_matches_inspector_and_litert(tflite_int8):
    """Both .tflite runners read the I/O qparams the runtime maps float ↔ int8 with: LiteRT's
    own report and the flatbuffer (reference) must equal the inspector's and LiteRT's legacy
    ``quantization`` tuple."""
    from ai_edge_litert.interpreter import Interpreter

    from edgequant.runtime.litert import LiteRTRunner
    from edgequant.runtime.tflite_reference import TFLiteReferenceRunner

    inspected = {q.name: q for q in inspect_model(tflite_int8).quantized}
    it = Interpreter(model_path=str(tflite_int8))
    details = [*it.get_input_details(), *it.get_output_details()]
    for runner in (LiteRTRunner(tflite_int8), TFLiteReferenceRunner(tflite_int8)):
        assert set(runner.io) == {d["name"] for d in details}
        for d in details:
            io, q = runner.io[d["name"]], inspected[d["name"]]
            scale, zp = d["quantization"]
            assert io.scale == scale == float(q.scale)  # the stored float32, widened
            assert io.zero_point == zp == int(q.zero_point)
            assert io.dtype == np.dtype(d["dtype"]).name == q.dtype


def test_blocked_int4_weights_show_block_size(qdq_conv, tmp_path):
    """edgequant's ``w4a16_g128``: int4 weights, scales blocked along the input axis."""
    from edgequant.ptq.quantizer import quantize

    float_path = qdq_conv.parent / "f.onnx"
    p = quantize(float_path, "w4a16_g128").save(tmp_path / "w4.onnx")
    model = onnx.load(p)
    consts = {t.name: nh.to_array(t) for t in model.graph.initializer}
    s = inspect_model(p)
    blocked = [q for q in s.quantized if q.block_size is not None]
    assert blocked, "w4a16_g128 produced no blocked tensor"
    for q in blocked:
        dq = next(n for n in model.graph.node
                  if n.op_type == "DequantizeLinear" and n.input[0] == q.name)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in dq.attribute}
        assert q.dtype == "int4" and q.block_size == attrs["block_size"] == 128
        assert q.axis == attrs.get("axis", 1)
        np.testing.assert_array_equal(q.scale, consts[dq.input[1]])
    assert s.parameter_bytes < sum(nh.to_array(t).nbytes for t in model.graph.initializer)
