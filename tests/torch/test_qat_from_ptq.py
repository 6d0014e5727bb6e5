"""Whole-graph QAT prepared with calibration data starts exactly where PTQ ends.

At 4-bit weights PTQ corrects biases for the mean shift of weight rounding (recipe option
``bias_correction="auto"``); QAT that skipped it started EfficientNet-Lite0 at 6 % top-1
agreement with the float model instead of PTQ's 22 %, and training never caught up.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_models import lite_net, run_ort

import edgequant
from edgequant.recipes.builtin import get_recipe
from edgequant.torch.capture import capture, qat_from_capture

X = torch.randn(48, 3, 16, 16, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("recipe", ["w8a8", "w4a8", "w4a8_mixed"])
def test_prepared_qat_equals_ptq(recipe):
    cap = capture(lite_net(), X[:2])
    cal = X[:32].numpy()
    qat = qat_from_capture(cap, get_recipe(recipe), calibration=cal)
    ptq = edgequant.quantize(cap.graph, recipe, calibration={qat.input_names[0]: cal})
    qat.eval()
    with torch.no_grad():
        fq = qat(X).numpy()  # (48, 10); the weight quantizers set their qparams here
    mine = {**qat.activation_qparams(), **qat.weight_qparams()}
    shared = [k for k in mine if k in ptq.qparams]
    assert len(shared) == len(mine)
    assert all(mine[k] == ptq.qparams[k] for k in shared), [
        k for k in shared if mine[k] != ptq.qparams[k]]
    if recipe == "w4a8_mixed":  # the same layers keep 8-bit weights in QAT and PTQ
        bits = {k: q.qtype.bits for k, q in qat.weight_qparams().items()}
        assert set(bits.values()) == {4, 8}
        assert ptq.report["w4_keep_int8"]["layers"]
    if recipe.startswith("w4a8"):  # the corrected biases are what QAT trains from
        assert ptq.report.get("recovery", {}).get("bias_correction", {}).get("layers", 0) > 0
    assert np.array_equal(fq, run_ort(ptq.model, X.numpy()))  # (48, 10): bit for bit
