"""Weighted layers as row GEMMs, and bounded row samples of their inputs.

A Conv (any groups, 1-D or 2-D), a Gemm or a MatMul with a constant weight computes, for
every output position, ``y[g, o] = Σ_k rows[g, k] · W[g, o, k]``. Sampling a fixed number
of output positions (the input patch under each) per calibration batch keeps the memory of
AdaRound and range search independent of the number of calibration samples: the layer's
output error on those rows is its output error on the data, estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from edgequant.graph.info import GraphInfo, attr
from edgequant.interp.ops.conv import Window, window
from edgequant.interp.registry import NodeContext

#: Cap on floats held per layer (rows × G × K): 2 M floats = 8 MB per copy of the rows.
MAX_FLOATS_PER_LAYER = 2_000_000


@dataclass
class Layer:
    """One weighted node: its activation input, constant weight and row layout.

    ``layout`` is ``conv`` (W is (M, C/g, *kernel)), ``kn`` (W is (K, N): MatMul, Gemm) or
    ``nk`` (W is (N, K): Gemm with transB=1).
    """

    node: str
    op_type: str
    input: str
    weight: str
    layout: str
    groups: int
    weight_shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Reduction length per group (C/g · kernel taps, or K)."""
        if self.layout == "conv":
            return math.prod(self.weight_shape[1:])
        return self.weight_shape[0] if self.layout == "kn" else self.weight_shape[1]

    @property
    def n_out(self) -> int:
        """Output channels (M or N)."""
        return self.weight_shape[0] if self.layout in ("conv", "nk") else self.weight_shape[1]

    def to_gok(self, w):
        """Weight (numpy or torch, original layout) → (G, O/G, K)."""
        if self.layout == "conv":
            return w.reshape(self.groups, self.n_out // self.groups, self.k)
        if self.layout == "nk":
            return w.reshape(1, self.n_out, self.k)
        return w.T.reshape(1, self.n_out, self.k)

    def max_rows(self, rows: int) -> int:
        """``rows`` capped so that rows × C_in stays under :data:`MAX_FLOATS_PER_LAYER`."""
        return max(16, min(rows, MAX_FLOATS_PER_LAYER // max(1, self.groups * self.k)))


def weighted_layers(model: onnx.ModelProto, weights: set[str] | None = None) -> list[Layer]:
    """Conv / Gemm / MatMul nodes (graph order) whose weight is a constant read by them alone;
    ``weights`` keeps only those weight tensors."""
    info = GraphInfo.build(model)
    out = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        x, w = node.input[0], node.input[1]
        if not info.is_constant(w) or info.is_constant(x) or len(info.consumers.get(w, [])) != 1:
            continue
        if weights is not None and w not in weights:
            continue
        shape = tuple(info.constants[w].dims)
        name = node.name or node.output[0]
        if node.op_type == "Conv":
            if len(shape) not in (3, 4):
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            out.append(Layer(name, "Conv", x, w, "conv", int(attr(node, "group", 1)), shape,
                             attrs))
        elif len(shape) == 2 and not (node.op_type == "Gemm" and attr(node, "transA", 0)):
            nk = node.op_type == "Gemm" and bool(attr(node, "transB", 0))
            out.append(Layer(name, node.op_type, x, w, "nk" if nk else "kn", 1, shape))
    return out


@dataclass
class Pick:
    """Which rows of one batch to take: sample index and output position per row."""

    n: np.ndarray                 # (r,) sample index
    pos: tuple[np.ndarray, ...]   # conv: (oh, ow) each (r,); matmul: (flat row,)
    win: Window | None = None


def pick_rows(layer: Layer, shape: tuple[int, ...], r: int, rng: np.random.Generator) -> Pick:
    """Choose ``r`` random output rows of a batch whose input has ``shape``."""
    if layer.layout != "conv":
        total = math.prod(shape[:-1])
        return Pick(np.zeros(r, np.int64), (rng.integers(0, total, r),))
    spatial = tuple(shape[2:])
    ctx = NodeContext(layer.node, "Conv", layer.attrs)
    win = window(ctx, spatial, tuple(layer.attrs.get("kernel_shape") or layer.weight_shape[2:]))
    n = rng.integers(0, shape[0], r)
    oh, ow = rng.integers(0, win.out[0], r), rng.integers(0, win.out[1], r)
    return Pick(n, (oh, ow), win)


def gather_rows(layer: Layer, x: np.ndarray, pick: Pick) -> np.ndarray:
    """Rows (r, G, K) float32 of input ``x`` at ``pick`` (conv: the zero-padded patches)."""
    x = np.asarray(x, np.float32)
    if layer.layout != "conv":
        return x.reshape(-1, x.shape[-1])[pick.pos[0]][:, None, :]  # (r, 1, K)
    w = pick.win
    if x.ndim == 3:
        x = x[:, :, None, :]  # (N, C, 1, W)
    kh, kw = w.kernel
    xp = np.pad(x, [(0, 0), (0, 0), (w.pads[0], w.pads[2]), (w.pads[1], w.pads[3])])
    ih = pick.pos[0][:, None] * w.strides[0] + np.arange(kh) * w.dilations[0]  # (r, kh)
    iw = pick.pos[1][:, None] * w.strides[1] + np.arange(kw) * w.dilations[1]  # (r, kw)
    patches = xp[pick.n[:, None, None], :, ih[:, :, None], iw[:, None, :]]  # (r, kh, kw, C)
    patches = patches.transpose(0, 3, 1, 2)  # (r, C, kh, kw)
    return np.ascontiguousarray(patches.reshape(len(pick.n), layer.groups, layer.k))


def layer_output(rows: np.ndarray, w_gok: np.ndarray) -> np.ndarray:
    """(r, G, K) rows through (G, O, K) weights → (r, G·O) float32 outputs (no bias)."""
    return np.einsum("rgk,gok->rgo", rows, w_gok, dtype=np.float32).reshape(len(rows), -1)


def following_clip(info: GraphInfo, node: onnx.NodeProto) -> tuple[float, float] | None:
    """The (lo, hi) range of the Relu / Clip that alone reads ``node``'s output, if any."""
    users = info.consumers.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type not in ("Relu", "Clip"):
        return None
    act = users[0]
    if act.op_type == "Relu":
        return 0.0, math.inf
    bounds = [-math.inf, math.inf]
    for i, name in enumerate(act.input[1:3]):
        if not name:
            continue
        if not info.is_constant(name):
            return None
        bounds[i] = float(info.const_array(name))
    if len(act.input) == 1:  # opset < 11: attributes
        bounds = [float(attr(act, "min", -math.inf)), float(attr(act, "max", math.inf))]
    return bounds[0], bounds[1]


def rows_per_batch(total_rows: int, batch: int, samples: int) -> int:
    """Rows to take from a batch of ``batch`` samples so ``samples`` give ``total_rows``."""
    return max(1, -(-total_rows * batch // max(1, samples)))
