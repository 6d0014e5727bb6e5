"""Learned rounding inside whole-graph QAT (``edgequant.torch.learned_rounding``).

Each int4 weight may only be ``⌊w/s⌋`` or ``⌊w/s⌋ + 1``; a rounding variable per weight is
trained by the distillation loss plus AdaRound's annealed regulariser, and ``convert`` ships
exactly the hardened integers. Oracles: the converted model's stored integers (onnx), its
outputs in onnxruntime (bit for bit against the QAT model's eval forward), PTQ's models
(round-to-nearest and AdaRound) for the untrained start, and the regulariser's formula.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import numpy_helper
from torch_models import lite_net, run_ort

import edgequant
import edgequant.torch as eqt
from edgequant.recipes.builtin import get_recipe
from edgequant.torch.capture import capture, qat_from_capture
from edgequant.torch.graph_convert import convert_graph
from edgequant.torch.learned_rounding import (
    LearnedRoundingQuantizer,
    learn_rounding,
    rounding_loss,
    rounding_stats,
)

X = torch.randn(48, 3, 16, 16, generator=torch.Generator().manual_seed(3))
FAST_ADAROUND = {"adaround": True, "adaround_iters": 200, "adaround_seconds_per_layer": 0,
                 "adaround_rows": 512}


@pytest.fixture(scope="module")
def net():
    return lite_net()


@pytest.fixture(scope="module")
def cap(net):
    return capture(net, X[:2])


def _stored_ints(model, names) -> dict[str, np.ndarray]:
    """The integer weight each QDQ model stores for the float weight ``name``."""
    inits = {t.name: t for t in model.graph.initializer}
    return {n: numpy_helper.to_array(inits[f"{n}_quantized"]).astype(np.int64) for n in names}


def _hardened(qat, names) -> dict[str, np.ndarray]:
    return {n: qat.quantizer(n).integers().numpy().astype(np.int64) for n in names}


@pytest.mark.parametrize("learn_scales", [False, True])
def test_trained_rounding_converts_to_the_hardened_integers(cap, net, learn_scales):
    """After training (a high rounding lr, so decisions flip), the converted model stores the
    hardened integers, each ⌊w/s⌋ or ⌊w/s⌋ + 1 of the float weight, and onnxruntime computes
    the QAT model's eval outputs bit for bit."""
    cal = X[:32].numpy()
    qat = qat_from_capture(cap, get_recipe("w4a8"), calibration=cal, learn_scales=learn_scales)
    floats = {n: qat.value(n).detach().clone() for n in qat.initializer_names()}
    names = learn_rounding(qat)
    assert names and all(isinstance(qat.quantizer(n), LearnedRoundingQuantizer) for n in names)
    start = _hardened(qat, names)
    steps = {n: qat.quantizer(n).effective_scale().clone() for n in names}  # (C,) at the start
    loader = [X[s:s + 8] for s in range(0, 48, 8)] * 4  # 24 steps
    eqt.fit_qat(qat, loader, teacher=net, labels=False, lr=1e-3, T=1.0, show_progress=False,
                freeze_observers_step=0, rounding_lr=0.2, rounding_reg=0.01)
    trained = _hardened(qat, names)
    flipped = sum(int(np.sum(trained[n] != start[n])) for n in names)
    assert flipped > 0  # training changed roundings (else this test proves nothing)
    for n in names:  # LSQ scales moved since: the choice is between the start's two
        q = qat.quantizer(n)
        s = steps[n].reshape([-1] + [1] * (floats[n].ndim - 1)).numpy()
        lo = np.floor(np.divide(floats[n].numpy(), s, dtype=np.float32))
        k = trained[n] - q.zero_point.reshape(s.shape).numpy().astype(np.int64)
        clipped = (trained[n] == q.spec.qtype.qmin) | (trained[n] == q.spec.qtype.qmax)
        assert np.all(((k == lo) | (k == lo + 1)) | clipped), n
    # convert straight after the last optimizer step (no forward since): the step's flips and
    # scale moves must reach the file, not the grid points the last training forward wrote
    converted = convert_graph(qat).model
    qat.eval()
    with torch.no_grad():
        fq = qat(X).numpy()  # (48, 10), hardened integers, onnxruntime's kernels emulated
    stored = _stored_ints(converted, names)
    assert all(np.array_equal(stored[n], trained[n]) for n in names)
    assert np.array_equal(run_ort(converted, X.numpy()), fq)


def test_untrained_learned_rounding_is_round_to_nearest(cap):
    """With a margin, every weight starts at the integer it rounded to: the untrained model
    converts to PTQ's round-to-nearest model (same recipe, same calibration) bit for bit."""
    cal = X[:32].numpy()
    qat = qat_from_capture(cap, get_recipe("w4a8"), calibration=cal)
    names = learn_rounding(qat, margin=0.2)
    ptq = edgequant.quantize(cap.graph, "w4a8", calibration={qat.input_names[0]: cal})
    ours, theirs = _stored_ints(convert_graph(qat).model, names), _stored_ints(ptq.model, names)
    assert all(np.array_equal(ours[n], theirs[n]) for n in names)
    assert np.array_equal(run_ort(convert_graph(qat).model, X.numpy()),
                          run_ort(ptq.model, X.numpy()))


def test_adaround_start_keeps_adaround_choice_between_floor_and_ceil_of_the_float(cap):
    """From PTQ's AdaRound with the float weights as reference: the start is AdaRound's
    integers (the PTQ model bit for bit), and the two allowed integers per weight come from
    the float weight — some AdaRound choices are the one of the two that is not nearest."""
    cal = X[:32].numpy()
    rec = get_recipe("w4a8").with_options(**FAST_ADAROUND)
    qat = qat_from_capture(cap, rec, calibration=cal)
    floats = {t.name: numpy_helper.to_array(t) for t in cap.graph.graph.initializer}
    names = learn_rounding(qat, reference={n: floats[n] for n in qat.initializer_names()})
    ptq = edgequant.quantize(cap.graph, rec, calibration={qat.input_names[0]: cal})
    ours, theirs = _stored_ints(convert_graph(qat).model, names), _stored_ints(ptq.model, names)
    assert all(np.array_equal(ours[n], theirs[n]) for n in names)
    rtn = _stored_ints(edgequant.quantize(cap.graph, "w4a8",
                                          calibration={qat.input_names[0]: cal}).model, names)
    assert any(not np.array_equal(ours[n], rtn[n]) for n in names)
    for n in names:  # AdaRound's integer is floor or ceil of the float weight (clamped)
        q = qat.quantizer(n)
        k = np.clip(q.base.numpy() + q.hard().numpy(), q.spec.qtype.qmin, q.spec.qtype.qmax)
        assert np.array_equal(k, ours[n]), n  # zero point 0 (symmetric int4)


def test_adaround_start_reference_defaults_to_the_floats_adaround_rounded(cap):
    """``learn_rounding(qat)`` without ``reference`` on PTQ's AdaRound start uses the float
    weights AdaRound rounded (``qat.rounding_reference``), not the grid points the QAT weights
    hold: the same floor integers and start as passing the float model's weights."""
    cal = X[:32].numpy()
    rec = get_recipe("w4a8").with_options(**FAST_ADAROUND)
    a, b = (qat_from_capture(cap, rec, calibration=cal) for _ in range(2))
    floats = {t.name: numpy_helper.to_array(t) for t in cap.graph.graph.initializer}
    assert sorted(a.rounding_reference) == sorted(n for n in a.initializer_names()
                                                  if a.plan.tensors[n].role == "weight"
                                                  and a.quantizer(n) is not None)
    names = learn_rounding(a)
    learn_rounding(b, reference={n: floats[n] for n in b.initializer_names()})
    for n in names:
        qa, qb = a.quantizer(n), b.quantizer(n)
        assert np.array_equal(qa.base.numpy(), qb.base.numpy()), n
        assert np.array_equal(qa.hard().numpy(), qb.hard().numpy()), n
    # without it (the grid points as reference) the floor is AdaRound's integer itself, so
    # every weight AdaRound rounded up could only move further up
    plain = qat_from_capture(cap, rec, calibration=cal)
    plain.rounding_reference = {}
    learn_rounding(plain)
    assert any(not np.array_equal(plain.quantizer(n).base.numpy(), a.quantizer(n).base.numpy())
               for n in names)
    nearest = qat_from_capture(cap, get_recipe("w4a8"), calibration=cal)
    assert nearest.rounding_reference == {}


def test_regulariser_is_adarounds():
    """mean(1 − |2h − 1|^β): 1 at h = ½, 0 at h ∈ {0, 1}, the formula in between."""
    from edgequant.ptq.recovery.adaround_relax import GAMMA, ZETA, annealed_beta

    qat = qat_from_capture(capture(lite_net(), X[:2]), get_recipe("w4a8"),
                           calibration=X[:16].numpy())
    learn_rounding(qat, margin=None)
    qs = [m for m in qat.modules() if isinstance(m, LearnedRoundingQuantizer)]
    h = torch.cat([q.soft().detach().reshape(-1) for q in qs]).double()
    raw = torch.cat([(torch.sigmoid(q.v) * (ZETA - GAMMA) + GAMMA).reshape(-1) for q in qs])
    assert torch.equal(h.float(), raw.clamp(0, 1))
    for beta in (20.0, 7.5, 2.0):
        want = float(torch.mean(1 - torch.abs(2 * h - 1) ** beta))
        assert float(rounding_loss(qat, beta).detach()) == pytest.approx(want, rel=1e-5)
    with torch.no_grad():
        for q in qs:
            q.v.fill_(0.0)  # h = ½ everywhere
    assert float(rounding_loss(qat, 2.0).detach()) == pytest.approx(1.0)
    assert rounding_stats(qat)["undecided"] == 1.0
    with torch.no_grad():
        for q in qs:
            q.v.fill_(9.0)  # h = 1: decided
    assert float(rounding_loss(qat, 2.0).detach()) == 0.0
    assert rounding_stats(qat) == {"weights": sum(q.v.numel() for q in qs), "undecided": 0.0,
                                   "up": 1.0}
    assert annealed_beta(0.1) is None and annealed_beta(0.2) == 20.0
    assert annealed_beta(0.9999) == pytest.approx(2.0, abs=1e-6)


def test_learn_rounding_refuses_bad_arguments(cap):
    with pytest.raises(TypeError, match="GraphQAT"):
        learn_rounding(torch.nn.Linear(2, 2))
    qat = qat_from_capture(cap, get_recipe("w4a8"), calibration=X[:16].numpy())
    with pytest.raises(ValueError, match="margin"):
        learn_rounding(qat, margin=0.5)
    with pytest.raises(ValueError, match="shape"):
        name = qat.initializer_names()[0]
        learn_rounding(qat, reference={name: np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="rounding_reg"):
        eqt.fit_qat(qat, [X[:4]], teacher=lite_net(), labels=False, rounding_reg=-1.0,
                    show_progress=False)


@pytest.mark.parametrize("straight_through", [False, True])
def test_straight_through_trains_on_the_hardened_integers(cap, straight_through):
    """``straight_through=True``: the training forward computes exactly the eval (hardened)
    forward, and gradients still reach every rounding variable; the soft forward differs."""
    from edgequant.torch.prepare import freeze_observers

    qat = qat_from_capture(cap, get_recipe("w4a8"), calibration=X[:32].numpy())
    learn_rounding(qat, margin=0.2, straight_through=straight_through)
    freeze_observers(qat)
    qat.kernels = None  # plain fake quantization in eval too: the same float path as training
    qat.train()
    y_train = qat(X[:8])  # (8, 10)
    y_train.square().sum().backward()
    qs = [m for m in qat.modules() if isinstance(m, LearnedRoundingQuantizer)]
    assert all(q.v.grad is not None and bool(q.v.grad.abs().sum() > 0) for q in qs)
    qat.eval()
    with torch.no_grad():
        y_eval = qat(X[:8])
    assert torch.equal(y_train.detach(), y_eval) == straight_through
