"""The report note on int4-weight convolutions in a QDQ model. Oracle: the graph onnxruntime
itself optimizes and runs (``optimized_model_filepath``): from the QDQ file the convolutions
stay float ``Conv`` fed by a DequantizeLinear of the int4 weight; from the ``qop`` file they
are ``QLinearConv`` — exactly what the note tells the user."""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from small_nets import conv_chain, images

import edgequant as eq
from edgequant.ptq.quantizer import int4_conv_note

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
from test_loading_real_world import MODELS, data_for


def _ort_ops(path, tmp_path) -> list[str]:
    """Op types of the main graph onnxruntime optimizes and runs for ``path`` (CPU)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "ort_optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def test_w4a8_notes_the_float_convs_and_qop_runs_them_integer(tmp_path):
    model = conv_chain()
    qm = eq.quantize(model, "w4a8", calibration={"x": images(16, 0)})
    notes = [n for n in qm.report["notes"] if "int4 weights" in n]
    assert len(notes) == 1 and "format='qop'" in notes[0]
    n_conv = sum(n.op_type == "Conv" for n in model.graph.node)
    assert notes[0].startswith(f"{n_conv} convolution(s)")
    qdq = qm.save(tmp_path / "w4.onnx")
    ops = _ort_ops(qdq, tmp_path)
    assert "QLinearConv" not in ops and ops.count("Conv") == n_conv  # float convs, as noted
    qop = qm.save(tmp_path / "w4_qop.onnx", format="qop")
    assert _ort_ops(qop, tmp_path).count("QLinearConv") == n_conv


@pytest.mark.parametrize("recipe", ["w8a8", "w4a16_g32"])
def test_no_note_without_int4_convolutions(recipe):
    qm = eq.quantize(conv_chain(), recipe, calibration={"x": images(16, 0)})
    assert not any("int4 weights" in n for n in qm.report["notes"])
    assert int4_conv_note(qm.model) is None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_note_counts_what_onnxruntime_runs_in_float_on_real_export_shapes(tmp_path, name):
    """w4a8 on each export shape (IR 3, -1 batch, Constant weights, If / Loop / Scan, ...): the
    note counts exactly the Conv nodes onnxruntime leaves float in the QDQ file, and the qop
    file runs that many as QLinearConv."""
    qm = eq.quantize(MODELS[name](), "w4a8", calibration=data_for(name))
    notes = [n for n in qm.report["notes"] if "with int4 weights" in n]
    noted = int(notes[0].split()[0]) if notes else 0
    qdq = _ort_ops(qm.save(tmp_path / "w4.onnx"), tmp_path)
    assert noted == qdq.count("Conv") and "QLinearConv" not in qdq
    qop = _ort_ops(qm.save(tmp_path / "w4_qop.onnx", format="qop"), tmp_path)
    assert qop.count("QLinearConv") == noted and "Conv" not in qop
