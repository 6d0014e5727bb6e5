"""Cross-layer equalization (Nagel et al., 2019, "Data-Free Quantization") on the float graph.

Two consecutive weighted layers ``y = f(W2 · g(W1 · x + b1) + b2)`` with ``g`` positive
homogeneous (ReLU, identity: ``g(x / s) = g(x) / s`` for ``s > 0``) compute the same thing
after ``W1[c] /= s_c``, ``b1[c] /= s_c``, ``W2[:, c] *= s_c``. Choosing
``s_c = sqrt(r1_c / r2_c)`` (``r1_c``: range of W1's output channel ``c``, ``r2_c``: range of
W2's input channel ``c``) makes both ranges ``sqrt(r1_c · r2_c)``: per-channel ranges match,
so per-tensor activations and per-channel weights lose less to rounding. Chains
(expand → depthwise → project) are swept until the scales settle.

Pairs: ``Conv | Gemm | MatMul`` (constant weight) → optional ``Relu | Clip`` → ``Conv``
(any group count, depthwise included) ``| Gemm | MatMul``, where each intermediate tensor
has exactly one consumer and is not a graph output.

ReLU6 (``Clip(0, hi)``) is not positive homogeneous: ``clip(x/s, 0, hi) ≠ clip(x, 0, hi)/s``
once ``x`` exceeds ``hi``, and ONNX ``Clip`` has scalar bounds, so a per-channel bound
``hi / s_c`` cannot be written. Replacing it by ``Relu`` (the paper's and AIMET's choice) is
not an option here: on EfficientNet-Lite0 it drops the float model's output cosine to 0.49.
So the Clip stays as it is and the scales are bounded by the calibration data instead: a
channel whose pre-activation reached ``hi`` keeps ``s_c = 1``; any other channel needs
``s_c ≥ max_c / hi`` (its scaled values stay below the bound). The equalized model is then
exact on every calibration sample and differs only where an unseen input drives a channel
that never saturated past ``hi · s_c``. Without calibration data such pairs are skipped.
``Clip(0, +inf)`` is a ReLU. Other clips (``lo != 0``) stop a pair.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from edgequant.graph.info import GraphInfo, attr
from edgequant.ptq.recovery.stats import Batches, channel_stats

log = logging.getLogger(__name__)

#: Sweeps over all pairs; each sweep moves every scale toward its fixed point.
MAX_SWEEPS = 20
#: Stop when no scale moved by more than this factor in a sweep.
SETTLED = 1e-4
#: Channels whose range is below this are dead: their scale stays 1.
DEAD_RANGE = 1e-12
#: Scales are kept within [1/LIMIT, LIMIT] so no channel collapses to denormals.
SCALE_LIMIT = 1e4
#: Relative headroom kept below a Clip bound (float rounding of the rescaled weights).
CLIP_MARGIN = 1e-3

FIRST_OPS = ("Conv", "Gemm", "MatMul")
SECOND_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class Pair:
    """Two weighted nodes joined through an optional activation node."""

    first: str
    act: str | None
    second: str


def _name(n: onnx.NodeProto) -> str:
    return n.name or n.output[0]


def _clip_bounds(node: onnx.NodeProto, info: GraphInfo) -> tuple[float, float] | None:
    """(lo, hi) of a Clip with constant bounds (missing = ∓inf), or None."""
    lo, hi = -np.inf, np.inf
    for idx, default in ((1, "min"), (2, "max")):
        if len(node.input) > idx and node.input[idx]:
            if not info.is_constant(node.input[idx]):
                return None
            v = float(info.const_array(node.input[idx]))
        else:
            v = attr(node, default, None)
            if v is None:
                continue
        if idx == 1:
            lo = v
        else:
            hi = v
    return lo, hi


def _act_ok(node: onnx.NodeProto, info: GraphInfo) -> bool:
    if node.op_type == "Relu":
        return True
    if node.op_type == "Clip":
        b = _clip_bounds(node, info)
        return b is not None and b[0] == 0.0 and b[1] > 0
    return False


def _weight_ok(node: onnx.NodeProto, info: GraphInfo, as_second: bool) -> bool:
    """Constant, single-use weight (and bias) in a layout we rescale."""
    if len(node.input) < 2 or not info.is_constant(node.input[1]):
        return False
    if len(info.consumers.get(node.input[1], [])) != 1:
        return False
    w = info.const_array(node.input[1])
    if node.op_type in ("Gemm", "MatMul") and w.ndim != 2:
        return False
    if node.op_type == "Gemm" and (attr(node, "transA", 0) or attr(node, "alpha", 1.0) != 1.0
                                   or attr(node, "beta", 1.0) != 1.0):
        return False
    if node.op_type == "Conv" and w.ndim < 3:
        return False
    if not as_second and len(node.input) > 2 and node.input[2]:
        b = node.input[2]
        if (not info.is_constant(b) or len(info.consumers.get(b, [])) != 1
                or info.const_array(b).shape != (out_channels(node, w),)):
            return False
    return True


def out_channels(node: onnx.NodeProto, w: np.ndarray) -> int:
    """Output channels of a weighted node with weight ``w``."""
    if node.op_type == "Conv":
        return w.shape[0]
    if node.op_type == "Gemm" and attr(node, "transB", 0):
        return w.shape[0]
    return w.shape[1]


def find_pairs(model: onnx.ModelProto) -> list[Pair]:
    """Every equalizable pair in graph order (see the module docstring)."""
    info = GraphInfo.build(model)
    outputs = set(info.graph_outputs)
    pairs = []
    for n in model.graph.node:
        if n.op_type not in FIRST_OPS or not _weight_ok(n, info, as_second=False):
            continue
        y = n.output[0]
        users = info.consumers.get(y, [])
        if y in outputs or len(users) != 1:
            continue
        act, nxt = None, users[0]
        if nxt.op_type in ("Relu", "Clip"):
            if not _act_ok(nxt, info):
                continue
            act, y = nxt, nxt.output[0]
            users = info.consumers.get(y, [])
            if y in outputs or len(users) != 1:
                continue
            nxt = users[0]
        if nxt.op_type not in SECOND_OPS or nxt.input[0] != y or not _weight_ok(nxt, info, True):
            continue
        c1 = out_channels(n, info.const_array(n.input[1]))
        w2 = info.const_array(nxt.input[1])
        c2 = (w2.shape[1] * attr(nxt, "group", 1) if nxt.op_type == "Conv"
              else (w2.shape[1] if nxt.op_type == "Gemm" and attr(nxt, "transB", 0) else w2.shape[0]))
        if c1 != c2:
            continue
        pairs.append(Pair(_name(n), _name(act) if act is not None else None, _name(nxt)))
    return pairs


def out_rows(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """``w`` viewed as (C_out, rest): one row per output channel (a copy)."""
    if node.op_type == "Conv" or (node.op_type == "Gemm" and attr(node, "transB", 0)):
        return w.reshape(w.shape[0], -1).copy()
    return w.T.copy()  # (K, N) → (N, K)


def from_out_rows(node: onnx.NodeProto, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`out_rows`."""
    if node.op_type == "Conv" or (node.op_type == "Gemm" and attr(node, "transB", 0)):
        return rows.reshape(shape)
    return rows.T.reshape(shape)


def in_rows(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """``w`` viewed as (C_in, rest): one row per input channel (grouped convs included)."""
    if node.op_type == "Conv":
        g = attr(node, "group", 1)
        o, cg = w.shape[:2]
        k = w.shape[2:]
        v = w.reshape(g, o // g, cg, *k)  # (g, O/g, C/g, kh, kw)
        v = np.moveaxis(v, 2, 1)  # (g, C/g, O/g, kh, kw)
        return v.reshape(g * cg, -1).copy()  # (C, O/g·kh·kw)
    if node.op_type == "Gemm" and attr(node, "transB", 0):
        return w.T.copy()  # (N, K) → (K, N)
    return w.copy()  # (K, N)


def from_in_rows(node: onnx.NodeProto, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`in_rows`."""
    if node.op_type == "Conv":
        g = attr(node, "group", 1)
        o, cg = shape[:2]
        k = shape[2:]
        v = rows.reshape(g, cg, o // g, *k)
        return np.moveaxis(v, 1, 2).reshape(shape)
    if node.op_type == "Gemm" and attr(node, "transB", 0):
        return rows.T.reshape(shape)
    return rows.reshape(shape)


@dataclass
class _Layer:
    node: onnx.NodeProto
    w: np.ndarray  # float64, original layout
    b: np.ndarray | None  # (C_out,) float64


def _bounds(model: onnx.ModelProto, pairs: list[Pair], batches: Batches | None
            ) -> tuple[list[Pair], dict[Pair, tuple[np.ndarray, np.ndarray]]]:
    """Per-channel (lower, upper) limits of each Clip(0, hi) pair's total scale, from the
    first layer's observed per-channel maximum; such pairs are dropped without data."""
    info = GraphInfo.build(model)
    nodes = {_name(n): n for n in model.graph.node}
    clipped = {p: _clip_bounds(nodes[p.act], info)[1] for p in pairs
               if p.act and nodes[p.act].op_type == "Clip"
               and np.isfinite(_clip_bounds(nodes[p.act], info)[1])}
    if batches is None:
        return [p for p in pairs if p not in clipped], {}
    axes = {nodes[p.first].output[0]: 1 if nodes[p.first].op_type == "Conv" else -1
            for p in clipped}
    stats = channel_stats(model, axes, batches)
    limits = {}
    for p, hi in clipped.items():
        top = stats[nodes[p.first].output[0]].max  # (C,) pre-activation maximum
        saturates = top >= hi
        lower = np.where(saturates, 1.0, np.maximum(top, 0.0) / hi * (1 + CLIP_MARGIN))
        upper = np.where(saturates, 1.0, np.inf)
        limits[p] = (np.maximum(lower, 1 / SCALE_LIMIT), upper)
    return pairs, limits


def equalize(model: onnx.ModelProto, batches: Batches | None = None
             ) -> tuple[onnx.ModelProto, dict]:
    """Equalize every pair in ``model`` (edited in place and returned) → (model, summary).

    ``batches`` (calibration data) bounds the scales of pairs through ``Clip(0, hi)``; see
    the module docstring. The summary holds ``pairs`` (``[first, act, second, mean |log2 s|,
    channels held at s=1]`` per pair) and ``sweeps``.
    """
    pairs, limits = _bounds(model, find_pairs(model), batches)
    summary: dict = {"pairs": [], "sweeps": 0}
    if not pairs:
        return model, summary
    info = GraphInfo.build(model)
    nodes = {_name(n): n for n in model.graph.node}
    layers: dict[str, _Layer] = {}
    for p in pairs:
        for nm in (p.first, p.second):
            if nm not in layers:
                n = nodes[nm]
                b = (info.const_array(n.input[2]).astype(np.float64)
                     if len(n.input) > 2 and n.input[2] else None)
                layers[nm] = _Layer(n, info.const_array(n.input[1]).astype(np.float64), b)
    total = {p: np.ones(1) for p in pairs}
    for sweep in range(MAX_SWEEPS):
        moved = 0.0
        for p in pairs:
            l1, l2 = layers[p.first], layers[p.second]
            rows1, rows2 = out_rows(l1.node, l1.w), in_rows(l2.node, l2.w)  # (C, ·) each
            r1, r2 = np.abs(rows1).max(axis=1), np.abs(rows2).max(axis=1)  # (C,)
            live = (r1 > DEAD_RANGE) & (r2 > DEAD_RANGE)
            s = np.ones_like(r1)
            s[live] = np.sqrt(r1[live] / r2[live])
            want = np.clip(total[p] * s, 1 / SCALE_LIMIT, SCALE_LIMIT)  # (C,) total scale
            if p in limits:
                want = np.clip(want, *limits[p])
            s = want / total[p]  # (C,) this sweep's step
            l1.w = from_out_rows(l1.node, rows1 / s[:, None], l1.w.shape)
            if l1.b is not None:
                l1.b = l1.b / s
            l2.w = from_in_rows(l2.node, rows2 * s[:, None], l2.w.shape)
            total[p] = want
            moved = max(moved, float(np.max(np.abs(np.log(s)))))
        summary["sweeps"] = sweep + 1
        if moved < SETTLED:
            break
    for layer in layers.values():
        set_constant(model, layer.node.input[1], layer.w)
        if layer.b is not None:
            set_constant(model, layer.node.input[2], layer.b)
    for p in pairs:
        held = int(np.sum(limits[p][1] == 1.0)) if p in limits else 0
        summary["pairs"].append([p.first, p.act, p.second,
                                 round(float(np.mean(np.abs(np.log2(total[p])))), 4), held])
    log.info("cross-layer equalization: %d pair(s), %d sweep(s)", len(pairs), summary["sweeps"])
    return model, summary


def set_constant(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """Replace the value of initializer / Constant ``name`` (its dtype kept)."""
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            dtype = numpy_helper.to_array(t).dtype
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value.astype(dtype), name))
            return
    for n in model.graph.node:  # a Constant node
        if n.op_type == "Constant" and n.output[0] == name:
            for a in n.attribute:
                if a.name == "value":
                    dtype = numpy_helper.to_array(a.t).dtype
                    a.t.CopyFrom(numpy_helper.from_array(value.astype(dtype), name))
                    return
    raise KeyError(f"constant {name!r} not found")
