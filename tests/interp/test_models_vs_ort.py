"""Whole quantized models through the interpreter vs onnxruntime: a small CNN quantized by
onnxruntime's quantize_static (QDQ and QOperator) and by edgequant.quantize (QDQ, then lowered
to QOperator by export.qop.lower), checked with edgequant.runtime.verify."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cnn_models import INPUT, float_cnn, images, quantized_cnn

from edgequant.runtime.verify import run, verify

#: Float requantization reproduces onnxruntime exactly on these models (measured 0 LSB).
MAX_LSB_FLOAT_MODE = 0
#: ``fixedpoint`` mode is TFLite arithmetic while onnxruntime requantizes in float32: the two
#: roundings may disagree by one step on a value (measured: ≤ 1 LSB, ~99 % identical).
MAX_LSB_FIXEDPOINT_VS_ORT = 1


@pytest.fixture(scope="module")
def feeds():
    return {INPUT: images(16, seed=5)}


@pytest.fixture(scope="module")
def ort_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnn")
    return {fmt: quantized_cnn(tmp, fmt) for fmt in ("qdq", "qoperator")}


@pytest.fixture(scope="module")
def edgequant_qdq():
    from edgequant import quantize

    return quantize(float_cnn(), "w8a8", calibration={INPUT: images(32)}).model


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_ort_quantized_cnn_is_bit_exact(ort_models, feeds, fmt):
    report = verify(ort_models[fmt], feeds, per_node=True)
    assert report.ok(MAX_LSB_FLOAT_MODE), report.to_dict()["outputs"]
    integer_nodes = [d for d in report.nodes if d.kind == "integer"]
    assert integer_nodes, "the model should expose integer intermediate tensors"
    assert all(d.max_diff == 0 for d in integer_nodes), [
        (d.name, d.max_diff) for d in integer_nodes if d.max_diff]
    json.dumps(report.to_dict())  # plain data for the CLI


def test_edgequant_qdq_and_lowered_are_bit_exact(edgequant_qdq, feeds):
    from edgequant.export.qop.lower import lower_to_qop

    shipped = verify(edgequant_qdq, feeds)  # ORT fuses QDQ: we interpret the lowering
    assert shipped.lowered and shipped.ok(MAX_LSB_FLOAT_MODE)
    as_float = verify(edgequant_qdq, feeds, optimize=False, lower_qdq=False)
    assert not as_float.lowered and as_float.ok(MAX_LSB_FLOAT_MODE)
    lowered = lower_to_qop(edgequant_qdq, requantization="float")
    assert any(n.op_type == "QLinearConv" for n in lowered.graph.node)
    report = verify(lowered, feeds, per_node=True)
    assert report.ok(MAX_LSB_FLOAT_MODE), report.to_dict()["outputs"]
    assert all(d.max_diff == 0 for d in report.nodes if d.kind == "integer")


def test_lowered_fixedpoint_within_one_lsb_of_ort(edgequant_qdq, feeds):
    from edgequant.export.qop.lower import lower_to_qop

    lowered = lower_to_qop(edgequant_qdq, requantization="fixedpoint")
    report = verify(lowered, feeds)  # mode read from the model's metadata
    assert report.requantization == "fixedpoint"
    assert report.ok(MAX_LSB_FIXEDPOINT_VS_ORT)


def test_run_helper_engines_agree(ort_models, feeds):
    ours = run(ort_models["qoperator"], feeds, engine="reference")
    theirs = run(ort_models["qoperator"], feeds, engine="onnxruntime")
    assert ours.keys() == theirs.keys()
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k])
    with pytest.raises(ValueError, match="engine"):
        run(ort_models["qoperator"], feeds, engine="tflite")


def test_verify_reports_a_real_difference(ort_models, feeds, monkeypatch):
    """verify must notice an interpreter that is off by one LSB in one op."""
    from edgequant.interp.registry import OPS

    exact = OPS[("", "QLinearConv")]

    def off_by_one(ctx, *args):
        y = exact(ctx, *args)
        return np.minimum(y.astype(np.int32) + 1, 255).astype(y.dtype)

    monkeypatch.setitem(OPS, ("", "QLinearConv"), off_by_one)
    report = verify(ort_models["qoperator"], feeds, per_node=True)
    conv_diffs = [d for d in report.nodes if d.producer == "QLinearConv"]
    assert conv_diffs and conv_diffs[0].max_diff == 1  # the first conv: exactly the +1
    assert all(d.max_diff >= 1 for d in conv_diffs)  # later ones inherit and amplify it
    assert min(d.identical for d in conv_diffs) < 0.5


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_integer_io_model_is_bit_exact(io):
    """io=int8/uint8: integer graph inputs and outputs, compared as integers (0 LSB)."""
    from edgequant import quantize
    from edgequant.export.qop.lower import lower_to_qop

    qm = quantize(float_cnn(), "w8a8", calibration={INPUT: images(32)}, io=io)
    meta = json.loads({p.key: p.value for p in qm.model.metadata_props}["edgequant.io"])
    qin = meta[INPUT]
    lo, hi = (-128, 127) if io == "int8" else (0, 255)
    x = np.clip(np.rint(images(8, seed=3) / qin["scale"]) + qin["zero_point"], lo, hi).astype(io)
    for model in (qm.model, lower_to_qop(qm.model)):
        report = verify(model, {INPUT: x}, per_node=True)
        assert [d.kind for d in report.outputs] == ["integer"]
        assert report.ok(MAX_LSB_FLOAT_MODE)
        assert all(d.max_diff == 0 for d in report.nodes if d.kind == "integer")
