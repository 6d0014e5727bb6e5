"""SmoothQuant: move activation outliers into the weights, folded so the MatMuls gain no op.

For ``Y = X · W`` with ``X (…, K)`` and per-feature scales ``s (K,)``,
``Y = (X / s) · (diag(s) · W)`` exactly. When ``X`` is a LayerNormalization output,
``X / s`` is the same LayerNorm with ``γ / s`` and ``β / s``; ``diag(s) · W`` scales the rows
of the constant weight. With (Xiao et al., 2023)

    s_j = max|X_j|^α / max_W |W_j,:|^(1 − α)        # (K,)

a feature that is 50× larger than the rest is divided down before the per-tensor activation
grid is fitted, and its weight row grows instead (per-channel weight grids absorb it).

``alpha="search"`` tries :data:`ALPHAS` (and no smoothing) per LayerNorm group and keeps
the one with the smallest output error of the fake-quantized MatMuls on calibration rows.

Post-LN transformers (BERT) also read the LayerNorm output on the residual path; scaling it
there would change the model, so such a LayerNorm is *cloned*: the copy with ``γ / s``,
``β / s`` feeds the smoothed MatMuls, the original keeps feeding the rest (one extra
LayerNormalization per group, reported as ``cloned``). Pre-LN graphs gain no node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import tensor_stem
from edgequant.graph.info import GraphInfo
from edgequant.primitives import fake_quantize
from edgequant.qparams import qparams_for
from edgequant.spec import QuantSpec

#: Migration strengths tried by ``alpha="search"`` (besides no smoothing).
ALPHAS = (0.25, 0.4, 0.5, 0.6, 0.75, 0.9)
#: Scales are kept in this range so no γ or weight row over- or underflows.
SCALE_RANGE = (1e-4, 1e4)


@dataclass
class SmoothGroup:
    """A LayerNormalization and the static MatMuls (constant 2-D weights) reading it."""

    norm: onnx.NodeProto
    matmuls: list[onnx.NodeProto]
    others: bool  # the LayerNorm output has other consumers (post-LN residual)

    @property
    def tensor(self) -> str:
        """The LayerNorm output the MatMuls read."""
        return self.norm.output[0]


def smooth_groups(model: onnx.ModelProto, static_matmuls: set[str],
                  info: GraphInfo | None = None) -> list[SmoothGroup]:
    """LayerNorms with constant γ (and β) feeding ≥ 1 of ``static_matmuls`` (node names)."""
    info = info or GraphInfo.build(model)
    groups = []
    for node in model.graph.node:
        if node.op_type != "LayerNormalization" or any(node.output[1:]):
            continue
        if not all(info.is_constant(i) for i in node.input[1:] if i):
            continue
        if int(_attr(node, "axis", -1)) != -1:  # features on the last axis only
            continue
        users = info.consumers.get(node.output[0], [])
        mms = [u for u in users if u.op_type == "MatMul" and (u.name or u.output[0]) in static_matmuls
               and u.input[0] == node.output[0] and info.is_constant(u.input[1])
               and info.const_array(u.input[1]).ndim == 2]
        if mms:
            groups.append(SmoothGroup(node, mms, others=len(mms) != len(users)))
    return groups


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def smoothing_scales(absmax: np.ndarray, weights: list[np.ndarray], alpha: float) -> np.ndarray:
    """``s_j = max|X_j|^α / max|W_j,:|^(1−α)`` over every weight (K, N_i), clipped to
    :data:`SCALE_RANGE`; features never active (max 0) keep ``s = 1``."""
    wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)  # (K,)
    ok = (absmax > 0) & (wmax > 0)
    s = np.ones_like(absmax, dtype=np.float64)  # (K,)
    s[ok] = absmax[ok].astype(np.float64) ** alpha / wmax[ok].astype(np.float64) ** (1 - alpha)
    return np.clip(s, *SCALE_RANGE).astype(np.float32)


def output_error(rows: np.ndarray, weights: list[np.ndarray], s: np.ndarray,
                 act_spec: QuantSpec, weight_specs: list[QuantSpec]) -> float:
    """Relative squared error of the fake-quantized smoothed MatMuls on ``rows`` (R, K)."""
    x = rows / s  # (R, K) float32
    xq = fake_quantize(x, qparams_for(x, act_spec))  # (R, K)
    num = den = 0.0
    for w, spec in zip(weights, weight_specs, strict=True):
        ws = w * s[:, None]  # (K, N)
        wq = fake_quantize(ws, qparams_for(ws, spec))  # (K, N)
        ref = rows @ w  # (R, N) float32
        num += float(((xq @ wq - ref) ** 2).sum())
        den += float((ref ** 2).sum())
    return num / max(den, 1e-30)


def choose_alpha(rows: np.ndarray, absmax: np.ndarray, weights: list[np.ndarray], alpha,
                 act_spec: QuantSpec, weight_specs: list[QuantSpec]
                 ) -> tuple[float | None, np.ndarray, float, float]:
    """(alpha, s, error before, error after); ``alpha="search"`` keeps the best of
    :data:`ALPHAS` and no smoothing (alpha ``None``, ``s = 1``)."""
    ones = np.ones_like(absmax, dtype=np.float32)
    before = output_error(rows, weights, ones, act_spec, weight_specs)
    if alpha != "search":
        s = smoothing_scales(absmax, weights, float(alpha))
        return float(alpha), s, before, output_error(rows, weights, s, act_spec, weight_specs)
    best: tuple[float | None, np.ndarray, float] = (None, ones, before)
    for a in ALPHAS:
        s = smoothing_scales(absmax, weights, a)
        err = output_error(rows, weights, s, act_spec, weight_specs)
        if err < best[2]:
            best = (a, s, err)
    return best[0], best[1], before, best[2]


def apply_smoothing(model: onnx.ModelProto, group: SmoothGroup, s: np.ndarray,
                    info: GraphInfo) -> None:
    """Fold ``s`` (K,) into the group's LayerNorm (cloned if others read it) and weights."""
    g = model.graph
    norm = group.norm
    stem = tensor_stem(norm.name or norm.output[0])
    params = []
    for i, name in enumerate(norm.input[1:3], start=1):
        if not name:
            params.append(name)
            continue
        v = info.const_array(name).astype(np.float32) / s  # (K,)
        new = f"{stem}_smooth_{'scale' if i == 1 else 'bias'}"
        g.initializer.append(numpy_helper.from_array(v.astype(np.float32), new))
        params.append(new)
    if group.others:
        out = f"{group.tensor}_smoothed"
        clone = helper.make_node("LayerNormalization", [norm.input[0], *params], [out],
                                 name=f"{norm.name or stem}_smoothed")
        clone.attribute.extend(norm.attribute)
        nodes = list(g.node)
        at = nodes.index(norm) + 1
        g.node.insert(at, clone)
        for mm in group.matmuls:
            mm.input[0] = out
    else:
        for j, p in enumerate(params, start=1):
            norm.input[j] = p
    for mm in group.matmuls:
        w = info.const_array(mm.input[1]).astype(np.float32) * s[:, None]  # (K, N)
        new = f"{tensor_stem(mm.name or mm.output[0])}_smoothed_weight"
        g.initializer.append(numpy_helper.from_array(w, new))
        mm.input[1] = new
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
