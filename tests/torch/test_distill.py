"""distillation_loss against an explicit float64 formula; fit_qat trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_models import tiny_cnn

from edgequant.torch import distillation_loss, fit_qat, prepare_qat

#: float32 log-softmax vs the float64 oracle.
KL_TOL = 1e-5


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_distillation_loss_is_t2_kl(T):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    p = _softmax(t.double().numpy() / T)  # teacher
    q = _softmax(s.double().numpy() / T)  # student
    want = T * T * np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))
    assert distillation_loss(s, t, T).item() == pytest.approx(want, rel=KL_TOL, abs=KL_TOL)
    assert distillation_loss(s, s, T).item() == pytest.approx(0.0, abs=KL_TOL)


def test_distillation_loss_rejects_bad_temperature():
    with pytest.raises(ValueError, match="T=0"):
        distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), 0)


def test_fit_qat_reduces_loss_with_teacher(images):
    torch.manual_seed(0)
    teacher = tiny_cnn().eval()
    y = teacher(images).argmax(1).detach()
    qat = prepare_qat(tiny_cnn(), "w8a8", learn_scales=True)
    batches = [(images[:16], y[:16]), (images[16:], y[16:])]
    hist = fit_qat(qat, batches, teacher=teacher, epochs=6, lr=1e-2, freeze_bn_epoch=4,
                   freeze_observers_epoch=5, show_progress=False)
    assert hist[-1] < hist[0]
    assert bool(qat.model[0].bn_frozen) and bool(qat.model[7].act_quant.frozen)



def test_cosine_schedule_follows_half_cosine(images, monkeypatch):
    """schedule='cosine': step k of n uses lr · (1 + cos(π k / n)) / 2; 'constant' keeps lr."""
    teacher = tiny_cnn().eval()
    seen: list[float] = []
    step = torch.optim.Adam.step

    def record(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    n = 4
    for schedule, want in (("constant", [1e-2] * n),
                           ("cosine", [1e-2 * (1 + np.cos(np.pi * k / n)) / 2 for k in range(n)])):
        seen.clear()
        fit_qat(prepare_qat(tiny_cnn(), "w8a8"), [images[:8]] * 2, teacher=teacher,
                labels=False, lr=1e-2, epochs=2, show_progress=False, schedule=schedule)
        assert seen == pytest.approx(want, rel=1e-9), schedule
    with pytest.raises(ValueError, match="schedule"):
        fit_qat(prepare_qat(tiny_cnn(), "w8a8"), [images], teacher=teacher, labels=False,
                show_progress=False, schedule="linear")
