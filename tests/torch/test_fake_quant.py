"""The torch fake-quant twin is bit-exact with edgequant.primitives (numpy, ONNX semantics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgequant.primitives import fake_quantize as np_fake_quantize
from edgequant.qparams import QParams, choose_qparams, qparams_for
from edgequant.spec import PerChannel, PerTensor, QType, QuantSpec
from edgequant.torch.fake_quant import fake_quantize, fake_quantize_lsq, fake_quantize_qparams

QTYPES = [QType(8, False), QType(8, True), QType(4, True, narrow_range=True), QType(16, True)]


def _qp_tensors(qp: QParams) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(qp.scale), torch.from_numpy(qp.zero_point.astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    qtype=st.sampled_from(QTYPES),
    per_channel=st.booleans(),
    symmetric=st.booleans(),
    rounding=st.sampled_from(["half_even", "half_away"]),
)
def test_bit_exact_vs_numpy(seed, qtype, per_channel, symmetric, rounding):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4, 3, 5)) * rng.uniform(0.1, 10)).astype(np.float32)
    gran = PerChannel(0) if per_channel else PerTensor()
    spec = QuantSpec(qtype, gran, symmetric=symmetric and qtype.signed, rounding=rounding)
    qp = qparams_for(x, spec)
    # Put some values exactly on half-way points so the rounding mode matters.
    scale = qp.scale.reshape(-1, 1) if per_channel else qp.scale  # (4, 1) or ()
    x[:, 0, :2] = ((np.arange(2) + 0.5) * scale).astype(np.float32)  # (4, 2)
    x[0, 1, 0] = 1e9  # saturates high
    want = np_fake_quantize(x, qp, rounding)
    got = fake_quantize_qparams(torch.from_numpy(x), qp, rounding).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("qtype", QTYPES)
def test_nan_and_inf_match_numpy(qtype):
    qp = choose_qparams(-1.0, 1.0, QuantSpec(qtype))
    x = np.array([np.nan, np.inf, -np.inf, 0.3], np.float32)
    with np.errstate(invalid="ignore"):
        want = np_fake_quantize(x, qp)
    got = fake_quantize_qparams(torch.from_numpy(x), qp).numpy()
    np.testing.assert_array_equal(got, want)


def test_ste_gradient_is_clipped():
    qp = choose_qparams(-1.0, 1.0, QuantSpec(QType(8, True), symmetric=True))
    s, z = _qp_tensors(qp)
    x = torch.tensor([-5.0, -0.5, 0.0, 0.7, 3.0], requires_grad=True)
    fake_quantize(x, s, z, qp.qtype).sum().backward()
    # Inside [qmin, qmax] the gradient passes straight through; saturated values get none.
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_lsq_forward_equals_ste_forward_and_scale_gradient_matches_paper():
    qt = QType(4, True, narrow_range=True)
    x = torch.tensor([-2.0, -0.33, 0.0, 0.41, 0.5, 1.7])
    scale = torch.tensor(0.1, requires_grad=True)
    zp = torch.tensor(0.0)
    y = fake_quantize_lsq(x, scale, zp, qt, grad_scale=1.0)
    assert torch.equal(y, fake_quantize(x, scale.detach(), zp, qt))
    y.sum().backward()
    # Esser et al. 2020, eq. 3: −v + round(v) inside, qmin / qmax when clamped (v = x / s).
    v = x.numpy() / np.float32(0.1)
    want = np.where(v <= qt.qmin, qt.qmin, np.where(v >= qt.qmax, qt.qmax, np.rint(v) - v)).sum()
    assert scale.grad.item() == pytest.approx(want, rel=1e-5)


def test_lsq_per_channel_grad_scale_default():
    qt = QType(8, True, narrow_range=True)
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    scale = torch.full((3,), 0.01, requires_grad=True)
    fake_quantize_lsq(w, scale, torch.zeros(3), qt, axis=0).sum().backward()
    g1 = scale.grad.clone()
    scale.grad = None
    fake_quantize_lsq(w, scale, torch.zeros(3), qt, axis=0, grad_scale=1.0).sum().backward()
    # default grad scale is 1/sqrt(N·qmax) with N = 4 elements per channel
    torch.testing.assert_close(g1, scale.grad / np.sqrt(4 * 127))
