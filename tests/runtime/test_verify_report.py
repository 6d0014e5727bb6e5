"""One VerifyReport for ONNX and TFLite: same fields, same JSON shape, real differences seen.

Oracles: onnxruntime and LiteRT themselves (verify compares them with edgequant's references);
the injected faults below are exact (+1 LSB on one output), so the expected numbers are known.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from runtime_models import fixed_matmul

from edgequant.runtime.diff import TensorDiff
from edgequant.runtime.report import VerifyReport
from edgequant.runtime.tflite_reference import TFLiteReferenceRunner
from edgequant.runtime.verify import verify
from edgequant.runtime.verify_tflite import verify_tflite

KERNEL_ENGINES = ["litert/builtin", "litert/xnnpack"]


def test_onnx_and_tflite_reports_have_the_same_shape(models):
    onnx_report = verify(models.qdq_path, {"x": models.x}, per_node=True)
    tfl_report = verify_tflite(models.tflite_path, {"x": models.x})
    a, b = onnx_report.to_dict(), tfl_report.to_dict()
    assert a.keys() == b.keys()
    assert {k for d in a["outputs"] + a["nodes"] for k in d} == {k for d in b["outputs"] for k in d}
    json.dumps(a), json.dumps(b)  # JSON-able as is
    assert onnx_report.engines == ["onnxruntime"] and onnx_report.lowered
    assert tfl_report.engines == KERNEL_ENGINES and tfl_report.engine == "litert"
    assert a["samples"] == b["samples"] == len(models.x)
    # the exporter's int8 graph: bit-exact on both kernel paths, output dequantized from int8
    for d in tfl_report.outputs:
        assert (d.name, d.kind, d.producer, d.max_diff) == ("y", "dequantized", "DEQUANTIZE", 0)
        assert d.identical == 1.0
    assert onnx_report.ok() and tfl_report.ok() and onnx_report.nodes


def test_tflite_integer_output_off_by_one_is_reported(models, monkeypatch):
    """A reference whose int8 output is 1 too high on every value: 1 LSB on both kernel paths
    (0 % identical), so ``ok()`` fails and ``ok(1)`` passes."""
    exact = TFLiteReferenceRunner._run

    def off_by_one(self, feeds):
        (y,) = exact(self, feeds)
        return [(y.astype(np.int16) + 1).astype(np.int8)]  # no value is 127 here (checked)

    (y,) = TFLiteReferenceRunner(models.tflite_int8_path).run({"x": models.x}, raw=True)
    assert y.dtype == np.int8 and y.max() < 127
    monkeypatch.setattr(TFLiteReferenceRunner, "_run", off_by_one)
    report = verify_tflite(models.tflite_int8_path, {"x": models.x})
    assert [(d.engine, d.kind, d.max_diff, d.identical) for d in report.outputs] == \
        [(e, "integer", 1.0, 0.0) for e in KERNEL_ENGINES]
    assert not report.ok() and report.ok(1) and report.max_lsb == 1


def test_onnx_fixed_batch_model_pads_and_counts_samples(tmp_path):
    model, _ = fixed_matmul(4)
    x = np.random.default_rng(0).normal(0, 1, (10, 3)).astype(np.float32)
    report = verify(model, {"x": x})
    assert report.samples == 10
    (d,) = report.outputs
    assert d.shape == (10, 2)  # batches of 4, 4 and 2 (padding dropped)
    assert d.kind == "float" and report.ok(0, float_atol=1e-5)


def test_report_lookup_and_thresholds():
    rows = [TensorDiff("y", "integer", (2,), "int8", 2.0, 0.5, "QLinearConv", "litert/builtin"),
            TensorDiff("y", "integer", (2,), "int8", 0.0, 1.0, "QLinearConv", "litert/xnnpack"),
            TensorDiff("z", "float", (2,), "float32", 0.25, 0.0, "Softmax", "litert/builtin")]
    r = VerifyReport(rows, engine="litert")
    assert r.max_lsb == 2.0 and r.engines == ["litert/builtin", "litert/xnnpack"]
    assert r.output("y", "litert/xnnpack").max_diff == 0.0
    assert not r.ok(1) and r.ok(2) and not r.ok(2, float_atol=0.1) and r.ok(2, float_atol=0.25)
    with pytest.raises(KeyError, match="'w'"):
        r.output("w")


def test_onnx_integer_io_float_feeds_are_quantized(tmp_path, models):
    """Float data for an int8-input ONNX model is quantized with the ``edgequant.io`` qparams
    (not truncated): the report then equals the one on data quantized by hand."""
    from edgequant import quantize

    qm = quantize(models.float_path, "w8a8", calibration={"x": models.x}, io="int8")
    meta = json.loads({p.key: p.value for p in qm.model.metadata_props}["edgequant.io"])["x"]
    xq = np.clip(np.rint(models.x / np.float32(meta["scale"])) + meta["zero_point"], -128, 127)
    by_hand = verify(qm.model, {"x": xq.astype(np.int8)})
    from_float = verify(qm.model, {"x": models.x})
    assert by_hand.outputs == from_float.outputs
    assert by_hand.outputs[0].kind == "integer" and by_hand.ok()
    onnx.checker.check_model(qm.model)


def test_tflite_per_node_compares_every_operator_output(models):
    """An all-integer CNN: every operator's output on both kernel paths, 0 LSB (integer
    tensors) or 0 dequantized LSB; no float islands, so nothing to isolate."""
    from edgequant.export.tflite.builder import load_model

    path = models.tflite_int8_path
    report = verify_tflite(path, {"x": models.x}, per_node=True)
    ops = load_model(path.read_bytes()).subgraphs[0].operators
    assert len({d.name for d in report.nodes}) == len(ops) - 1  # all but the graph output
    assert {d.engine for d in report.nodes} == set(KERNEL_ENGINES)
    assert all(d.kind == "integer" and d.max_diff == 0 for d in report.nodes), \
        [d for d in report.nodes if d.max_diff]
    assert report.float_layers == () and report.ok()
    iso = verify_tflite(path, {"x": models.x}, isolate_integer=True)
    assert iso.boundaries == () and iso.ok()
