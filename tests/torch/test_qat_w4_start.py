"""4-bit QAT with learned (LSQ) scales starts exactly where PTQ ends.

PTQ's weight clip search (on by default at ≤ 4-bit weights) chooses a range ratio α < 1 for
many channels; the LSQ weight scales must start from those clipped scales (not from the
weights' full min/max), so the first forward equals the PTQ model bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_models import lite_net, run_ort

import edgequant
from edgequant.recipes.builtin import get_recipe
from edgequant.torch.capture import capture, qat_from_capture

X = torch.randn(48, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def test_lsq_weight_scales_start_at_ptq_clipped_scales():
    cap = capture(lite_net(), X[:2])
    cal = X[:32].numpy()
    qat = qat_from_capture(cap, get_recipe("w4a8"), calibration=cal, learn_scales=True)
    ptq = edgequant.quantize(cap.graph, "w4a8", calibration={qat.input_names[0]: cal})
    clipped = [k for k, q in qat.weight_quant.items() if bool((q.clip < 1).any())]
    assert clipped  # the clip search shrank some ranges: the case this test is about
    qat.eval()
    with torch.no_grad():
        fq = qat(X).numpy()  # (48, 10); LSQ scales initialise here
    assert all(isinstance(q.scale, torch.nn.Parameter) for q in qat.weight_quant.values())
    mine = {**qat.activation_qparams(), **qat.weight_qparams()}
    assert set(mine) <= set(ptq.qparams)
    assert all(mine[k] == ptq.qparams[k] for k in mine), [
        k for k in mine if mine[k] != ptq.qparams[k]]
    assert np.array_equal(fq, run_ort(ptq.model, X.numpy()))  # (48, 10): bit for bit


def test_learned_scales_whose_bias_overflows_are_projected_and_deploy_as_trained():
    """Training can shrink an LSQ scale and grow the bias until the int32 bias (with the
    accumulator headroom) no longer fits; ``convert`` then raises that channel's scale. The
    forward must use the raised scale too, or the deployed model drifts from the trained one
    (EfficientNet-Lite0 w4a8: 94.5 % identical predictions before this projection)."""
    from edgequant.torch.graph_convert import convert_graph

    cap = capture(lite_net(), X[:2])
    qat = qat_from_capture(cap, get_recipe("w4a8"), calibration=X[:32].numpy(),
                           learn_scales=True)
    qat.eval()
    with torch.no_grad():
        qat(X[:2])  # LSQ scales initialise at PTQ's
        weight = next(iter(qat._bias_of))
        q, bias = qat.quantizer(weight), qat.value(qat._bias_of[weight].tensor)
        before = q.scale.detach().clone()
        q.scale.mul_(1e-4)  # as if training had shrunk the scale and grown the bias
        bias.mul_(1e3)
        fq = qat(X).numpy()  # (48, 10)
    assert bool((q.scale.detach() > before * 1e-4).any())  # projected up to fit the bias
    deployed = run_ort(convert_graph(qat).model, X.numpy())  # (48, 10)
    assert np.array_equal(fq, deployed)
