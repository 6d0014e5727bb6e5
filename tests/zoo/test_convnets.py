"""Convnet sizes and structure: ≥ 1 M parameters, split between Conv and Linear layers."""

import pytest
import torch
from torch import nn

from edgequant_zoo.convnets import MobileNetLike, VGGNet, build_seeded, count_parameters

MIN_PARAMS = 1_000_000


def test_vgg_has_1m_parameters_in_convs_and_linears():
    model = build_seeded(VGGNet)
    total = count_parameters(model)
    convs = count_parameters(model, (nn.Conv2d,))
    linears = count_parameters(model, (nn.Linear,))
    assert total == sum(p.numel() for p in model.parameters())
    assert total >= MIN_PARAMS
    # Both weight kinds must be substantial so quantization error shows in each.
    assert convs >= 0.2 * total and linears >= 0.5 * total
    assert convs + linears >= 0.99 * total  # the rest is BatchNorm


def test_mobilenet_has_1m_parameters_depthwise_and_residuals():
    model = build_seeded(MobileNetLike)
    assert count_parameters(model) >= MIN_PARAMS
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert sum(getattr(m, "use_residual", False) for m in model.modules()) >= 3


@pytest.mark.parametrize("cls", [VGGNet, MobileNetLike])
def test_convnets_classify_mnist_shapes(cls):
    model = build_seeded(cls).eval()
    with torch.no_grad():
        assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_build_seeded_is_deterministic_and_keeps_global_rng():
    state = torch.random.get_rng_state()
    a, b = build_seeded(VGGNet, seed=1), build_seeded(VGGNet, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
