"""Intermediate-feature distillation (``fit_qat(features=...)``): the float reference runs the
float graph like onnxruntime does, the loss matches a float64 numpy formula, and bad values
are clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch_models import lite_net, tiny_cnn

import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.torch.capture import capture, qat_from_capture
from edgequant.torch.feature_distill import FEATURE_EPS, FloatFeatures, feature_loss, feature_names

X = torch.randn(40, 3, 16, 16, generator=torch.Generator().manual_seed(5))
#: float32 torch ops vs onnxruntime's float kernels on the same float graph, relative to the
#: tensor's largest value (BN-folded weights of lite_net reach ~50: sums of large terms)
FLOAT_TOL = 1e-4


@pytest.fixture(scope="module")
def qat():
    """A w4a8 QAT model of the EfficientNet-like stack, started from PTQ (bias-corrected)."""
    return qat_from_capture(capture(lite_net(), X[:2]), get_recipe("w4a8"),
                            calibration=X[:32].numpy())


def test_feature_loss_is_normalised_mse():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(2, 3, 4, 4, generator=g), torch.randn(5, 7, generator=g) * 30]
    t = [torch.randn(2, 3, 4, 4, generator=g), torch.randn(5, 7, generator=g) * 30]
    want = np.mean([np.mean((a.double().numpy() - b.double().numpy()) ** 2)
                    / (np.var(b.double().numpy(), ddof=1) + FEATURE_EPS) for a, b in zip(s, t, strict=True)])
    assert feature_loss(s, t).item() == pytest.approx(want, rel=1e-5)
    assert feature_loss(t, t).item() == 0.0
    with pytest.raises(ValueError, match="same non-zero number"):
        feature_loss(s, t[:1])


def test_float_reference_is_the_float_graph_before_recovery(qat):
    """Oracle: onnxruntime on the float graph (pre bias correction) with every matched
    tensor made a graph output."""
    ref = FloatFeatures(qat)
    names = feature_names(qat)
    assert names == ref.names and len(names) >= 8  # stem, expand, depthwise, Adds, pool, ...
    model = onnx.ModelProto()
    model.CopyFrom(qat.float_graph)
    for n in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT,
                                                                     None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {qat.input_names[0]: X.numpy()})
    got = ref(X)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.numpy(), w, atol=FLOAT_TOL * np.abs(w).max(), rtol=0)
    # the student's graph is the bias-corrected one: its float outputs differ
    corrected = {t.name for t in qat.graph.graph.initializer} & {
        t.name for t in qat.float_graph.graph.initializer}
    assert any(not np.array_equal(qat.value(n).detach().numpy(),
                                  onnx.numpy_helper.to_array(next(
                                      t for t in qat.float_graph.graph.initializer if t.name == n)))
               for n in corrected)


def test_fit_qat_with_features_lowers_the_feature_error():
    q = qat_from_capture(capture(lite_net(), X[:2]), get_recipe("w4a8"),
                         calibration=X[:32].numpy())
    ref = FloatFeatures(q)
    from edgequant.torch.feature_distill import run_with

    def error() -> float:
        q.eval()
        with torch.no_grad():
            return feature_loss(run_with(q, ref.names, X)[1:], ref(X)[1:]).item()

    before = error()
    # biases learn (lr 1e-2), int4 weights stay near PTQ's integers (step_lr 1e-3): on this
    # net moving them by ≥ 1 % of a step per update raised the feature error instead
    eqt.fit_qat(q, [X[s:s + 8] for s in range(0, 40, 8)] * 3, teacher=lite_net(),
                labels=False, lr=1e-2, step_lr=1e-3, features=10.0, show_progress=False,
                freeze_observers_step=0)
    assert error() < 0.99 * before


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", True])
def test_bad_feature_weight_is_a_clear_error(qat, bad):
    with pytest.raises(ValueError, match="features="):
        eqt.fit_qat(qat, [X[:4]], teacher=lite_net(), labels=False, features=bad,
                    show_progress=False)


def test_features_need_a_whole_graph_qat_model():
    swap = eqt.prepare_qat(tiny_cnn(), "w8a8")  # module-swap path: no graph to match
    with pytest.raises(TypeError, match="GraphQAT"):
        eqt.fit_qat(swap, [torch.zeros(2, 1, 8, 8)], teacher=tiny_cnn().eval(), labels=False,
                    features=1.0, show_progress=False)


def _matched_output(qat, weight: str, names: list[str]) -> str | None:
    """The matched tensor the node reading ``weight`` produces (through Relu / Clip)."""
    node = next(n for n in qat.nodes if weight in n.inputs)
    out = node.outputs[0]
    while out not in names:
        nxt = [n for n in qat.nodes if out in n.inputs]
        if len(nxt) != 1 or nxt[0].op_type not in ("Relu", "Clip"):
            return None
        out = nxt[0].outputs[0]
    return out


def test_local_features_train_each_layer_on_its_own_term(qat):
    """Oracle: PyTorch autograd on the plain forward. In local mode the gradient of the
    feature loss (mean of N terms) on a conv weight is exactly ``1/N ·`` the gradient of the
    term of the tensor that conv produces — later terms do not reach it — while the outputs
    are unchanged."""
    import copy

    from edgequant.torch.feature_distill import LocalFeatures, run_with
    from edgequant.torch.prepare import freeze_observers

    q = copy.deepcopy(qat)
    q.train()
    freeze_observers(q)  # the same activation qparams in every forward

    ref = FloatFeatures(q)
    names, x = ref.names, X[:6]
    target = ref(x)[1:]
    weights = [w for w in q.initializer_names() if q.quantizer(w) is not None
               and w not in q._biases and _matched_output(q, w, names) is not None]
    assert len(weights) >= 4
    with LocalFeatures(q, names) as rec:
        out_local = q(x)
    local = feature_loss(rec.ordered(names), target)
    g_local = torch.autograd.grad(local, [q.value(w) for w in weights])
    plain = run_with(q, names, x)
    np.testing.assert_array_equal(out_local.detach().numpy(), plain[0].detach().numpy())
    feats = dict(zip(names, plain[1:], strict=True))
    g_plain = torch.autograd.grad(feature_loss(plain[1:], target), [q.value(w) for w in weights],
                                 retain_graph=True)
    differs = 0
    for w, gl, gp in zip(weights, g_local, g_plain, strict=True):
        k = names.index(_matched_output(q, w, names))
        term = feature_loss([feats[names[k]]], [target[k]]) / len(names)
        (want,) = torch.autograd.grad(term, [q.value(w)], retain_graph=True)
        assert float(want.abs().max()) > 0, w
        np.testing.assert_allclose(gl.numpy(), want.numpy(), rtol=1e-4,
                                   atol=1e-6 * float(want.abs().max()))
        differs += not np.allclose(gp.numpy(), want.numpy(), rtol=1e-2, atol=0)
    assert differs >= 1  # end to end, later terms reach the early layers
    assert not hasattr(q, "__dict__") or "_quantize" not in q.__dict__  # restored on exit


def test_fit_qat_local_features_trains_and_checks_its_option(qat):
    import copy

    q = copy.deepcopy(qat)
    before = {w: q.value(w).detach().clone() for w in q.initializer_names()}
    eqt.fit_qat(q, [X[:8], X[8:16]], teacher=lite_net(), labels=False, lr=1e-2, step_lr=0.05,
                features=10.0, features_local=True, show_progress=False, freeze_observers_step=0)
    assert any(not torch.equal(before[w], q.value(w)) for w in before)
    with pytest.raises(ValueError, match="features_local=True needs"):
        eqt.fit_qat(q, [X[:4]], teacher=lite_net(), labels=False, features_local=True,
                    show_progress=False)
    with pytest.raises(ValueError, match="features_local="):
        eqt.fit_qat(q, [X[:4]], teacher=lite_net(), labels=False, features=1.0,
                    features_local=1, show_progress=False)
