"""QAT that starts from PTQ's AdaRound: the float weights placed on AdaRound's integers.

With ``adaround=True`` in the recipe, :func:`edgequant.quantize` stores a *learned* rounding
of each static weight (``⌊w/s⌋`` or ``⌊w/s⌋ + 1`` on the round-to-nearest grid, and the
biases corrected after it, :mod:`edgequant.ptq.recovery.adaround`). QAT's weight quantizers
round to nearest, so fine-tuning from the unchanged float weights would start from
round-to-nearest instead. :func:`adaround_start` runs PTQ's own AdaRound stage
(:func:`~edgequant.ptq.recovery.adaround.adaround_stage`) on the recovered float graph and
replaces each AdaRounded weight by its dequantized integers ``s · (q − z)``: the grid points,
which round to nearest back to ``q`` with half a step of slack on either side, so the learned
rounding lives in the float weights from then on (training moves them like any other).

The weight quantizer computes its qparams from ``α · [min, max]`` of the current weight at
every step (PTQ's clip search ratio α, :mod:`edgequant.ptq.recovery.weight_clip`). The grid
points span a different range than the original weights, so :func:`grid_clip` picks, per
channel, the ratio α whose qparams from the new weight are PTQ's bit for bit; LSQ scales
(``learn_scales=True``) initialise from the same computation.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import torch

from edgequant.errors import EdgequantError
from edgequant.graph.info import GraphInfo
from edgequant.graph.passes.insert_qdq import insert_qdq
from edgequant.primitives import dequantize
from edgequant.ptq.recovery.adaround import adaround_stage
from edgequant.ptq.recovery.cle import set_constant
from edgequant.qparams import QParams, qparams_for, reduce_range
from edgequant.recipes.decisions import QuantPlan
from edgequant.spec import QuantSpec
from edgequant.torch.quantizers import clipped_qparams

log = logging.getLogger(__name__)

#: float32 neighbours of the first estimate of α tried on each side: the qparams are a
#: float32 product then a float64 division cast to float32, so the exact α is within a few
#: ulps (``grid_clip`` raises if none of them reproduces the scale).
ALPHA_ULPS = 64


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def adaround_start(graph: onnx.ModelProto, plan: QuantPlan, act: dict[str, QParams],
                   overrides: dict[str, QParams], calibration, batch_size: int
                   ) -> tuple[onnx.ModelProto, dict[str, QParams], dict]:
    """PTQ's AdaRound stage on the recovered float ``graph`` (``act``: PTQ's activation
    qparams, ``overrides``: its searched weight qparams, ``calibration``: the feeds).

    Returns a copy of ``graph`` with the biases AdaRound corrected and each weight whose
    learned integers PTQ ships set to ``dequantize(q)``; the qparams each such weight's
    quantizer must compute before any int32-bias fit (PTQ's: ``overrides`` or min/max of the
    original weight); and AdaRound's report (``report["adaround"]`` of ``edgequant.quantize``).
    """
    report: dict = {}
    qm, ints = adaround_stage(graph, _copy(graph), plan, {**overrides, **act}, overrides,
                              "float", calibration, batch_size, None, report)
    # insert_qdq keeps learned integers only where a weight's final qparams are the ones
    # AdaRound rounded on (an int32-bias fit can raise a channel's scale): as PTQ ships them
    _, used, _ = insert_qdq(_copy(qm), plan, {**overrides, **act}, overrides, "float",
                            weight_ints=ints)
    info = GraphInfo.build(graph)
    specs = {d.tensor: d.spec for d in plan.quantized("weight", mode="static")}
    targets: dict[str, QParams] = {}
    for name, (qp, q) in ints.items():
        if used.get(name) != qp:
            continue  # PTQ rounds this weight to nearest too: the float weight stays
        set_constant(qm, name, dequantize(q, qp))  # (C_out, ...) float32 grid points
        targets[name] = overrides.get(name) or qparams_for(
            info.const_array(name).astype(np.float32), specs[name])
    log.info("prepare_qat: AdaRound (%s) learned %d weight(s); QAT starts from its integers",
             report.get("adaround", {}).get("mode"), len(targets))
    return qm, targets, report


def grid_clip(w: np.ndarray, target: QParams, spec: QuantSpec, name: str = "weight"
              ) -> np.ndarray:
    """Range ratios α (float32, (C,) or ()) with ``clipped_qparams(w, α, spec) == target``
    bit for bit, searched around ``α ≈ target range / range of w``; an error naming ``name``
    and the channels when no float32 α within :data:`ALPHA_ULPS` ulps reproduces them."""
    lo, hi = (np.asarray(a, np.float64) for a in reduce_range(w, spec.granularity))  # (C,) / ()
    amax = np.maximum(-np.minimum(lo, 0), np.maximum(hi, 0))
    want = np.asarray(target.scale, np.float64) * (spec.qtype.qmax - spec.qtype.qmin)
    if spec.symmetric:
        want = want / 2.0
        have = amax
    else:
        have = np.maximum(hi, 0) - np.minimum(lo, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(have > 0, want / have, 1.0).astype(np.float32)  # (C,) or ()
    found = np.zeros(first.shape, bool)
    alpha = first.copy()
    down, up = first.copy(), first.copy()
    for step in range(ALPHA_ULPS + 1):
        for cand in ((first,) if step == 0 else (down, up)):
            qp = clipped_qparams(w, cand, spec)
            ok = (~found & (qp.scale == target.scale)
                  & (qp.zero_point == target.zero_point))
            alpha = np.where(ok, cand, alpha)
            found |= ok
        if found.all():
            return alpha.astype(np.float32)
        down = np.nextafter(down, np.float32(0))
        up = np.nextafter(up, np.float32(np.inf))
    bad = np.flatnonzero(~found).tolist() if found.ndim else ["all"]
    raise EdgequantError(
        f"{name}: no weight range ratio reproduces PTQ's AdaRound qparams on channel(s) "
        f"{bad[:10]} (the learned integers span too little of the grid); use "
        "adaround=False for QAT, or report this model")


@torch.no_grad()
def load_grid_clips(qat, targets: dict[str, QParams]) -> None:
    """Give each AdaRounded weight's quantizer the ratio α (:func:`grid_clip`) with which its
    qparams from the grid-point weight are PTQ's."""
    for name, target in targets.items():
        q = qat.quantizer(name)
        if q is None:
            continue
        w = qat.value(name).detach().numpy()
        alpha = grid_clip(w, target, q.spec, name)
        q.clip.copy_(torch.from_numpy(alpha).reshape(q.clip.shape))
