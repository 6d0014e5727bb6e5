"""``fit_qat(step_lr=...)``: quantized weights move in units of their own quantization step.

Oracle: PyTorch autograd on an identical copy of the model gives the gradient ``g``; Adam's
first update is ``lr · g / (|g| + eps)``, so with ``step_lr`` each weight must move by
``−step_lr · g / (|g| + eps) · s_c`` (``s_c`` its channel's scale), and every other parameter
by the absolute ``lr``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch_models import lite_net, tiny_cnn

import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.torch.capture import capture, qat_from_capture
from edgequant.torch.distill import distillation_loss
from edgequant.torch.fake_quant import _broadcast
from edgequant.torch.quantizers import WeightQuantizer

X = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(7))
ADAM_EPS = 1e-8  # torch.optim.Adam's default


@pytest.fixture(scope="module")
def cap():
    return capture(lite_net(), X[:2])


@pytest.mark.parametrize("learn", [False, True])
def test_first_update_is_step_lr_steps(cap, learn):
    qat = qat_from_capture(cap, get_recipe("w4a8"), calibration=X.numpy(), learn_scales=learn)
    teacher = lite_net()
    twin = copy.deepcopy(qat)  # the oracle's copy: same forward, autograd gradients
    twin.train()
    for q in twin.act_quant.values():
        q.freeze()
    loss = distillation_loss(twin(X[:8]), teacher(X[:8]).detach(), 4.0)
    loss.backward()
    steps = {n: _broadcast(q.effective_scale(), q.axis, twin.value(n).ndim)
             for n in twin.initializer_names()
             if isinstance(q := twin.quantizer(n), WeightQuantizer)}
    assert len(steps) >= 6  # stem, expand, depthwise, project ×2, head
    eqt.fit_qat(qat, [X[:8]], teacher=teacher, labels=False, lr=1e-3, step_lr=0.1,
                freeze_observers_step=0, show_progress=False)
    for n in twin.initializer_names():
        old, g = twin.value(n).detach(), twin.value(n).grad
        rate = 0.1 * steps[n] if n in steps else 1e-3
        want = old - rate * g / (g.abs() + ADAM_EPS)
        torch.testing.assert_close(qat.value(n).detach(), want, rtol=1e-5, atol=1e-7,
                                   msg=f"{n} ({'weight' if n in steps else 'other'})")


def test_step_lr_lets_large_int4_weights_change_level(cap):
    """lite_net's BN-folded weights are large (steps up to ~10): an absolute lr of 1e-3 moves
    only a few int4 weights (of small-step channels) to another level in a few updates;
    step_lr=0.2 moves many, in every layer."""
    def changed(**kw) -> int:
        qat = qat_from_capture(cap, get_recipe("w4a8"), calibration=X.numpy())
        qat.eval()
        with torch.no_grad():
            qat(X[:2])
        before = {k: v.clone() for k, v in _codes(qat).items()}
        eqt.fit_qat(qat, [X[:8], X[8:]] * 2, teacher=lite_net(), labels=False,
                    freeze_observers_step=0, show_progress=False, **kw)
        after = _codes(qat)
        return {k: int((before[k] != after[k]).sum()) for k in before}

    absolute, stepped = changed(lr=1e-3), changed(lr=1e-3, step_lr=0.2)
    assert sum(stepped.values()) > 4 * sum(absolute.values()) + 20, (absolute, stepped)
    assert all(v > 0 for v in stepped.values()), stepped


def _codes(qat) -> dict[str, torch.Tensor]:
    """The integer codes round(w / s) of every quantized weight at its current scale."""
    out = {}
    for n in qat.initializer_names():
        q = qat.quantizer(n)
        if isinstance(q, WeightQuantizer):
            w = qat.value(n).detach()
            out[n] = torch.round(w / _broadcast(q.effective_scale(), q.axis, w.ndim))
    return out


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, "0.1", True])
def test_bad_step_lr_is_a_clear_error(cap, bad):
    qat = qat_from_capture(cap, get_recipe("w4a8"))
    with pytest.raises(ValueError, match="step_lr="):
        eqt.fit_qat(qat, [X[:4]], teacher=lite_net(), labels=False, step_lr=bad,
                    show_progress=False)


def test_step_lr_needs_a_whole_graph_qat_model():
    swap = eqt.prepare_qat(tiny_cnn(), "w8a8")
    with pytest.raises(TypeError, match="GraphQAT"):
        eqt.fit_qat(swap, [torch.zeros(2, 1, 8, 8)], teacher=tiny_cnn().eval(), labels=False,
                    step_lr=0.1, show_progress=False)
