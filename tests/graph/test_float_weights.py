"""Float-weight Conv / ConvTranspose / Gemm between quantized tensors stay float in onnxruntime
(graph/passes/float_weights.py): onnxruntime's WeightBiasQuantization would otherwise quantize
their weights to int8 per tensor at session start.

Oracle: the same file run by onnxruntime with graph optimizations disabled (what the file
says, node by node) and by the reference ``onnx.reference`` evaluator; before the pass the
optimized session differed from both."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from torch import nn

import edgequant
import edgequant.torch as eqt
from edgequant.graph.passes.float_weights import keep_float_weights
from edgequant.recipes import Rule
from edgequant.recipes.builtin import get_recipe


def _session(model: onnx.ModelProto, optimize: bool, path=None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if path is not None:
        so.optimized_model_filepath = str(path)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class Decoder(nn.Module):
    """Conv → (float) Conv → ConvTranspose → Linear head on a flattened map."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.c3 = nn.Conv2d(4, 4, 1)
        self.fc1 = nn.Linear(4 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, 10)
        self.fc3 = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c2(torch.relu(self.c1(x))))
        y = self.c3(torch.relu(self.up(y)))
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(y.flatten(1))))))


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    m = Decoder().eval()
    x = torch.randn(16, 3, 4, 4)
    return eqt.export_onnx(m, x[:2]), x.numpy()


def _float_rule_model(graph, x, nodes):
    rec = get_recipe("w8a8").with_rules(Rule(nodes=tuple(nodes), action="float"))
    return edgequant.quantize(graph, rec, calibration={graph.graph.input[0].name: x})


def test_skipped_conv_and_gemm_and_conv_transpose_run_float(decoder, tmp_path):
    graph, x = decoder
    convs = [n.name for n in graph.graph.node if n.op_type in ("Conv", "Gemm")]
    # c2 float: its output then stays float up to the ConvTranspose (nothing to guard); fc2
    # float between quantized fc1 / fc3 and the ConvTranspose (no integer plan) are guarded
    skipped = [convs[1], convs[-2]]
    qm = _float_rule_model(graph, x, skipped)
    feed = {qm.model.graph.input[0].name: x}
    ran = _session(qm.model, True, tmp_path / "opt.onnx").run(None, feed)[0]
    as_written = _session(qm.model, False).run(None, feed)[0]
    np.testing.assert_allclose(ran, as_written, rtol=0, atol=1e-6)
    ref = ReferenceEvaluator(qm.model).run(None, feed)[0]
    np.testing.assert_allclose(ran, ref, rtol=0, atol=1e-5)
    # onnxruntime kept the three float-weight nodes float: no weight Q it made itself
    opt = onnx.load(tmp_path / "opt.onnx")
    made = [n.name for n in opt.graph.node if n.op_type == "QuantizeLinear" and "weight" in n.name]
    assert not made, made
    float_ops = [n.op_type for n in opt.graph.node if n.op_type in ("Conv", "ConvTranspose",
                                                                     "Gemm", "FusedConv",
                                                                     "FusedGemm")]
    assert "ConvTranspose" in float_ops and len(float_ops) >= 3, float_ops
    assert any("onnxruntime runs them in float" in n for n in qm.report.get("notes", []))


def test_without_the_pass_onnxruntime_quantizes_them(decoder):
    """The condition the pass guards against is real (fails if onnxruntime stops doing it)."""
    graph, x = decoder
    convs = [n.name for n in graph.graph.node if n.op_type in ("Conv", "Gemm")]
    qm = _float_rule_model(graph, x, [convs[-2]])  # fc2 (Gemm) float
    m = qm.model
    # undo the pass: the per-axis DQ reads its QuantizeLinear's scalar scale / zero point again
    q_of = {n.output[0]: n for n in m.graph.node if n.op_type == "QuantizeLinear"}
    undone = 0
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and "_for_" in n.name:
            q = q_of[n.input[0]]
            n.input[1], n.input[2] = q.input[1], q.input[2]
            del n.attribute[:]
            undone += 1
    assert undone == 2  # fc2 and the ConvTranspose
    feed = {m.graph.input[0].name: x}
    ran = _session(m, True).run(None, feed)[0]
    as_written = _session(m, False).run(None, feed)[0]
    assert np.abs(ran - as_written).max() > 1e-4


def test_pass_leaves_quantized_and_float_input_nodes_alone(decoder):
    graph, x = decoder
    qm = edgequant.quantize(graph, "w8a8", calibration={graph.graph.input[0].name: x})
    assert [n.op_type for n in qm.model.graph.node].count("Conv") == 3
    m = onnx.ModelProto()
    m.CopyFrom(qm.model)
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    before = [list(n.input) for n in convs]
    assert keep_float_weights(m) == []  # already applied: idempotent
    assert [list(n.input) for n in convs] == before
    per_axis = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and "_for_" in n.name]
    consumers = [c.op_type for n in per_axis for c in m.graph.node if n.output[0] in c.input]
    assert consumers == ["ConvTranspose"]  # only the float ConvTranspose, no quantized Conv
    assert keep_float_weights(onnx.load_from_string(graph.SerializeToString())) == []


def test_tflite_and_qop_exports_read_the_per_axis_dq(decoder, tmp_path):
    graph, x = decoder
    convs = [n.name for n in graph.graph.node if n.op_type == "Conv"]
    qm = _float_rule_model(graph, x, [convs[1]])
    qm.save(tmp_path / "m_qop.onnx", format="qop")
    feed = {qm.model.graph.input[0].name: x}
    qop = onnx.load(tmp_path / "m_qop.onnx")
    np.testing.assert_allclose(_session(qop, True).run(None, feed)[0],
                               _session(qop, False).run(None, feed)[0], rtol=0, atol=1e-6)


def test_verify_agrees_on_a_model_with_float_layers(decoder):
    """The reference interpreter runs the float layers float; onnxruntime now does too (it was
    1 LSB off before: onnxruntime ran the float Gemm as int8 per tensor)."""
    from edgequant.runtime.verify import verify

    graph, x = decoder
    gemms = [n.name for n in graph.graph.node if n.op_type == "Gemm"]
    qm = _float_rule_model(graph, x, [gemms[1]])
    report = verify(qm.model, {qm.model.graph.input[0].name: x})
    assert report.max_lsb == 0, report.max_lsb
