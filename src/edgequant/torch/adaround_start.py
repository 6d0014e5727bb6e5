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
from edgequant.graph.io import copy_model
from edgequant.graph.passes.insert_qdq import insert_qdq
from edgequant.primitives import broadcast_param, dequantize
from edgequant.ptq.recovery.adaround import adaround_stage
from edgequant.ptq.recovery.cle import set_constant
from edgequant.qparams import QParams, choose_qparams, qparams_for, reduce_range
from edgequant.recipes.decisions import QuantPlan
from edgequant.spec import QuantSpec

log = logging.getLogger(__name__)

#: float32 neighbours of the first estimate of α tried on each side (the qparams are a
#: float32 product then a float64 division cast to float32: the exact α, when one exists,
#: is within an ulp or two of the estimate).
ALPHA_ULPS = 4
#: relative move of a granule's largest-magnitude weights tried when no α alone fits, and
#: how many tries (:func:`grid_clip`)
EXTREME_MOVE = 1e-4
EXTREME_TRIES = 256


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
    qm, ints = adaround_stage(graph, copy_model(graph), plan, {**overrides, **act}, overrides,
                              "float", calibration, batch_size, None, report)
    # insert_qdq keeps learned integers only where a weight's final qparams are the ones
    # AdaRound rounded on (an int32-bias fit can raise a channel's scale): as PTQ ships them
    _, used, _ = insert_qdq(copy_model(qm), plan, {**overrides, **act}, overrides, "float",
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


def _alpha_search(lo: np.ndarray, hi: np.ndarray, target: QParams, spec: QuantSpec,
                  todo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per granule of ``todo``: a float32 α within :data:`ALPHA_ULPS` ulps of the first
    estimate with ``choose_qparams(α·lo, α·hi) == target`` (as :func:`clipped_qparams`
    computes), and whether one was found."""
    lo64, hi64 = np.minimum(lo, 0).astype(np.float64), np.maximum(hi, 0).astype(np.float64)
    want = np.asarray(target.scale, np.float64) * (spec.qtype.qmax - spec.qtype.qmin)
    have = np.maximum(-lo64, hi64) * 2.0 if spec.symmetric else hi64 - lo64
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(have > 0, want / have, 1.0).astype(np.float32)  # (C,) or ()
    found, alpha = np.zeros(first.shape, bool), first.copy()
    down, up = first.copy(), first.copy()
    for step in range(ALPHA_ULPS + 1):
        for cand in ((first,) if step == 0 else (down, up)):
            qp = choose_qparams(lo * cand, hi * cand, spec)
            ok = (todo & ~found & (qp.scale == target.scale)
                  & (qp.zero_point == target.zero_point))
            alpha = np.where(ok, cand, alpha)
            found |= ok
        if found[todo].all():
            break
        down = np.nextafter(down, np.float32(0))
        up = np.nextafter(up, np.float32(np.inf))
    return alpha.astype(np.float32), found


def grid_clip(w: np.ndarray, target: QParams, spec: QuantSpec, name: str = "weight"
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(w', α)`` with ``clipped_qparams(w', α, spec) == target`` bit for bit: α (float32,
    (C,) or ()) searched around ``target range / range of w``.

    The qparams are a float32 product ``α · max|w|`` then a float64 division cast to float32,
    so for some ranges no float32 α lands on ``target``'s scale. There (symmetric specs) the
    elements of largest magnitude of the granule are moved by a relative ≤ :data:`EXTREME_MOVE`
    (their integers unchanged: far below half a step) and α searched again.
    Raises an error naming ``name`` and the granules when nothing fits."""
    w = np.asarray(w, np.float32)
    lo, hi = reduce_range(w, spec.granularity)  # (C,) or () float32
    amax = np.maximum(-np.minimum(lo, 0), np.maximum(hi, 0))  # (C,) or ()
    alpha, found = _alpha_search(lo, hi, target, spec, np.ones(np.shape(lo), bool))
    moved = amax.copy()
    # α·m lands on the few float32 ranges whose qparams are the target's only for some m:
    # stepping m by single ulps moves α·m in near-constant phase, so the tries are spread
    # pseudo-randomly over ±EXTREME_MOVE (relative; ≤ 0.001 of a step at 4 bits)
    offsets = np.random.default_rng(0).uniform(-EXTREME_MOVE, EXTREME_MOVE, EXTREME_TRIES)
    for r in offsets if spec.symmetric else ():
        if found.all():
            break
        m = np.where(amax > 0, amax * np.float32(1 + r), amax).astype(np.float32)
        a, ok = _alpha_search(-m, m, target, spec, ~found)
        alpha, moved = np.where(ok, a, alpha), np.where(ok, m, moved)
        found |= ok
    if not found.all():
        bad = np.flatnonzero(~found).tolist() if found.ndim else ["all"]
        raise EdgequantError(
            f"{name}: no weight range ratio reproduces PTQ's AdaRound qparams on channel(s) "
            f"{bad[:10]} (e.g. a channel whose learned integers are all zero); use "
            "adaround=False for QAT, or report this model")
    big = broadcast_param(amax, spec.granularity, w.shape)
    new = broadcast_param(moved, spec.granularity, w.shape)
    w = np.where((np.abs(w) == big) & (big > 0), np.sign(w) * new, w).astype(np.float32)
    return w, alpha


@torch.no_grad()
def load_grid_clips(qat, targets: dict[str, QParams]) -> None:
    """Give each AdaRounded weight's quantizer the ratio α (:func:`grid_clip`) with which its
    qparams from the grid-point weight are PTQ's."""
    for name, target in targets.items():
        q = qat.quantizer(name)
        if q is None:
            continue
        p = qat.value(name)
        w, alpha = grid_clip(p.detach().numpy(), target, q.spec, name)
        p.copy_(torch.from_numpy(w))
        q.clip.copy_(torch.from_numpy(alpha).reshape(q.clip.shape))
