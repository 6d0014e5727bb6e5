"""Whole-graph QAT (prepare_qat with example_inputs): plan-driven fake quantization on a
non-Sequential module with functional calls, checked against the PTQ pipeline, onnxruntime
and the reference interpreter."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgequant
import edgequant.torch as eqt
from edgequant.errors import RecipeError, UnsupportedOpError
from edgequant.recipes.builtin import get_recipe
from edgequant.runtime.runners import open_runner
from edgequant.torch.capture import SKIP_RULE, capture, check_ops, qat_from_capture


class Net(nn.Module):
    """Conv–BN–ReLU6, depthwise + Hardswish, residual Add, SE (Linear, Sigmoid, Mul), Concat,
    MaxPool, adaptive pool, Flatten, Linear, LayerNorm, Softmax — all via functional calls."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c2 = nn.Conv2d(8, 8, 1)
        self.se = nn.Linear(8, 8)
        self.fc = nn.Linear(16 * 4 * 4, 10)
        self.ln = nn.LayerNorm(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn(self.c1(x)))
        z = self.c2(F.hardswish(self.dw(y))) + y
        g = torch.sigmoid(self.se(z.mean((2, 3))))
        z = F.max_pool2d(torch.cat([z * g[:, :, None, None], y], 1), 2)
        out = self.fc(torch.flatten(F.adaptive_avg_pool2d(z, 4), 1))
        return torch.softmax(self.ln(out), -1)


def _net() -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial BN statistics, so folding matters
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


X = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def cap():
    """One capture shared by the tests (exporting is the slow part)."""
    return capture(_net(), X[:2])


def _ort(model: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    runner = open_runner(model)
    return np.asarray(runner.run({runner.input_names[0]: x.numpy()})[0])


def _fq(qat, x: torch.Tensor) -> np.ndarray:
    qat.eval()
    with torch.no_grad():
        return qat(x).numpy()


def test_untrained_qat_converts_to_the_ptq_model(cap):
    qat = qat_from_capture(cap, get_recipe("w8a8"), calibration=X)
    ours = eqt.convert(qat)
    ptq = edgequant.quantize(cap.graph, "w8a8", calibration={qat.input_names[0]: X.numpy()})
    assert set(ours.qparams) == set(ptq.qparams)
    assert all(ours.qparams[k] == ptq.qparams[k] for k in ptq.qparams)
    np.testing.assert_array_equal(_ort(ours.model, X), _ort(ptq.model, X))


def test_float_graph_runs_like_onnxruntime_and_the_module(cap):
    qat = qat_from_capture(cap, get_recipe("w8a8"))
    qat.fake_quant = False
    got = _fq(qat, X)
    np.testing.assert_allclose(got, _ort(cap.graph, X), rtol=0, atol=2e-6)
    with torch.no_grad():
        np.testing.assert_allclose(got, _net()(X).numpy(), rtol=0, atol=2e-6)


def test_fake_quant_sits_where_the_plan_quantizes(cap):
    qat = qat_from_capture(cap, get_recipe("w8a8"), calibration=X)
    plan = qat.plan
    ops = {n.output[0]: n.op_type for n in qat.graph.graph.node}
    want = {k for k, d in plan.tensors.items() if d.role == "activation" and d.action == "quantize"}
    assert want == set(qat.activation_qparams())
    floats = {d.op_type for d in plan.float_nodes()}
    assert {"HardSwish", "LayerNormalization"} <= floats  # float ops compute in float ...
    for out, op in ops.items():
        if op == "MaxPool":
            assert qat.quantizer(out) is None, (op, out)  # ... shared ops stay on their grid
        if op in ("Clip", "Add", "Mul", "Concat", "Sigmoid", "Softmax", "GlobalAveragePool"):
            assert qat.quantizer(out) is not None, (op, out)
    fused = [k for k, d in plan.tensors.items() if d.action == "fused"]
    assert fused and all(qat.quantizer(k) is None for k in fused)
    biases = [d for d in plan.tensors.values() if d.role == "bias" and d.action == "quantize"]
    assert len(biases) >= 4  # conv, depthwise, 1x1, fc: int32 at s_in · s_w in training


@pytest.mark.parametrize("recipe,learn", [("w8a8", False), ("w4a8", True)])
def test_trained_model_deploys_what_training_computed(cap, recipe, learn):
    qat = qat_from_capture(cap, get_recipe(recipe), calibration=X[:32], learn_scales=learn)
    teacher = _net()
    batches = [X[s:s + 16] for s in range(0, 64, 16)]
    eqt.fit_qat(qat, batches, teacher=teacher, labels=False, lr=1e-3, epochs=2,
                show_progress=False, freeze_observers_step=4)
    if learn:
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for n, p in qat.named_parameters() if n.endswith(".scale"))
    result = eqt.convert(qat)
    fq = _fq(qat, X)
    lsb = float(qat.activation_qparams()[qat.output_names[0]].scale)
    for engine in ("onnxruntime", "reference"):
        runner = open_runner(result.model, None if engine == "onnxruntime" else engine)
        got = np.asarray(runner.run({runner.input_names[0]: X.numpy()})[0])
        assert np.max(np.abs(got - fq)) <= 1.01 * lsb, engine
        assert np.mean(got.argmax(1) == fq.argmax(1)) >= 0.98, engine


def test_skip_keeps_the_named_module_float(cap):
    qat = qat_from_capture(cap, get_recipe("w8a8"), calibration=X, skip=["se"])
    skipped = [d for d in qat.plan.float_nodes() if SKIP_RULE in d.reason]
    assert [d.op_type for d in skipped] == ["Gemm"]
    assert all(qat.quantizer(k) is None for k in qat.plan.tensors
               if k.endswith("se.weight"))


def test_skip_naming_nothing_is_an_error_before_exporting():
    with pytest.raises(RecipeError, match=r"'sf' matches no module.*'se'"):
        eqt.prepare_qat(_net(), "w8a8", example_inputs=X[:2], skip=["sf"])


def test_unknown_op_names_node_op_and_module():
    node = onnx.helper.make_node("Einsum", ["a", "b"], ["c"], name="mix", equation="ij,jk->ik")
    graph = onnx.helper.make_graph([node], "g", [], [])
    with pytest.raises(UnsupportedOpError, match=r"'mix' \(Einsum\) in module 'block\.attn'"):
        check_ops(onnx.helper.make_model(graph), {"mix": "block.attn"})


def test_convert_before_any_data_is_an_error(cap):
    qat = qat_from_capture(cap, get_recipe("w8a8"))
    with pytest.raises(edgequant.errors.EdgequantError, match="seen no data"):
        eqt.convert(qat)


class _Branchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: neither exporter may bake one branch in
            return x * 2
        return x - 1


@pytest.mark.slow
def test_module_export_cannot_capture_is_a_clear_error():
    with pytest.raises(eqt.TorchExportError, match="_Branchy cannot be exported"):
        eqt.prepare_qat(_Branchy(), "w8a8", example_inputs=X[:2])
