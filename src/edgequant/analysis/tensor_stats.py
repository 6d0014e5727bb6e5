"""Per-layer tensor statistics: SQNR of the quantized weight and input activation, ranges and
outliers (``absmax / p99.9(|x|)``: ~1-3 for a well-spread tensor, >> 10 for a tensor whose
range one rare value sets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import numpy_helper

from edgequant.analysis.layers import Layer
from edgequant.observers import make_observer
from edgequant.primitives import fake_quantize
from edgequant.qparams import QParams
from edgequant.recipes.plan import QuantPlan
from edgequant.runtime.batching import batches
from edgequant.runtime.feeds import batch_axes_of, model_inputs
from edgequant.runtime.sessions import ort_session
from edgequant.spec import QType

#: Samples of the calibration data the activation statistics read (they stream in batches).
STATS_SAMPLES = 16
STATS_BATCH = 8
#: Values kept per tensor for the percentile (a strided subsample of each batch).
PERCENTILE_VALUES = 200_000
OUTLIER_PERCENTILE = 99.9


@dataclass(frozen=True)
class TensorStats:
    """One layer's weight and input-activation statistics (``None``: not quantized)."""

    weight_sqnr_db: float | None
    weight_sqnr_int4_db: float | None
    weight_absmax: float
    weight_outlier_ratio: float
    activation_sqnr_db: float | None
    activation_min: float | None
    activation_max: float | None
    activation_outlier_ratio: float | None


def outlier_ratio(x: np.ndarray) -> float:
    """``max|x| / p99.9(|x|)`` (1.0 for an all-zero tensor)."""
    a = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    if a.size == 0:
        return 1.0
    p = float(np.percentile(a, OUTLIER_PERCENTILE))
    top = float(a.max())
    return top / p if p > 0 else (1.0 if top == 0 else float("inf"))


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0:
        return float("inf")
    return 10.0 * float(np.log10(signal / noise)) if signal > 0 else float("-inf")


def input_energy_weights(node: onnx.NodeProto, w: np.ndarray, energy: np.ndarray | None
                         ) -> np.ndarray:
    """Mean square of the input channel each weight element multiplies, shaped like ``w``.

    Conv ``(O, I/g, kh, kw)`` reads input channel ``(o // (O/g))·(I/g) + i``; Gemm reads
    axis 1 (``transB=1``) or 0; MatMul axis 0. Without ``energy`` every element weighs 1.
    """
    if energy is None:
        return np.ones_like(w, dtype=np.float64)
    if node.op_type == "Conv" and w.ndim >= 2:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        o, i = w.shape[0], w.shape[1]
        chan = (np.arange(o)[:, None] // max(1, o // group)) * i + np.arange(i)[None, :]  # (O, I/g)
        e = energy[np.clip(chan, 0, energy.size - 1)]  # (O, I/g)
        return np.broadcast_to(e.reshape(o, i, *([1] * (w.ndim - 2))), w.shape)
    trans = next((a.i for a in node.attribute if a.name == "transB"), 0)
    axis = 1 if node.op_type == "Gemm" and trans else 0
    if w.ndim != 2 or w.shape[axis] != energy.size:
        return np.ones_like(w, dtype=np.float64)
    return np.broadcast_to(energy.reshape((1, -1) if axis == 1 else (-1, 1)), w.shape)


def weight_stats(w: np.ndarray, plan: QuantPlan, name: str, importance: np.ndarray,
                 bits: int | None = None) -> tuple[float | None, float, float]:
    """(SQNR dB of ``w`` quantized with its planned spec, absmax, outlier ratio).

    The SQNR weighs each element's signal and error by the energy of the input it multiplies
    (``importance``), so it estimates the layer's output SQNR from weight rounding alone: a
    huge weight on an input that is always zero costs nothing in float but wrecks the
    quantization grid of its channel, and shows up here as a low SQNR. ``bits`` replaces the
    planned width (e.g. 4: what int4 weights would cost).
    """
    d = plan.tensors.get(name)
    sqnr = None
    if d is not None and d.action == "quantize" and d.spec is not None:
        spec = d.spec if bits is None else replace(
            d.spec, qtype=QType(bits, True, narrow_range=True), symmetric=True)
        obs = make_observer(spec, name)
        obs.update(w)
        wq = fake_quantize(w, obs.qparams(), spec.rounding)
        w64 = w.astype(np.float64)
        sqnr = _sqnr(float(np.sum(importance * w64 ** 2)),
                     float(np.sum(importance * (w64 - wq) ** 2)))
    return sqnr, float(np.abs(w).max()) if w.size else 0.0, outlier_ratio(w)


def _channel_energy(x: np.ndarray, op_type: str) -> np.ndarray:
    """Mean square per input channel: axis 1 for Conv, the last axis otherwise."""
    axis = 1 if op_type == "Conv" and x.ndim > 2 else x.ndim - 1
    moved = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])  # (M, C)
    return np.sum(moved * moved, axis=0)  # (C,)


def layer_stats(float_model: onnx.ModelProto, layers: list[Layer], plan: QuantPlan,
                act_qparams: Mapping[str, QParams], calibration: Mapping[str, np.ndarray]
                ) -> dict[str, TensorStats]:
    """Stats per layer node. ``act_qparams`` maps an input tensor to its base qparams."""
    inits = {t.name: t for t in float_model.graph.initializer}
    tensors = sorted({layer.input for layer in layers})
    acc = {t: {"signal": 0.0, "noise": 0.0, "lo": np.inf, "hi": -np.inf, "sample": [],
               "energy": None} for t in tensors}
    op_of = {layer.input: layer.op_type for layer in layers}
    nodes = {(n.name or n.output[0]): n for n in float_model.graph.node}
    inputs = model_inputs(float_model)
    sess = ort_session(float_model, threads=1, extra_outputs=tensors)
    names = [o.name for o in sess.get_outputs()]
    n = min(STATS_SAMPLES, len(next(iter(calibration.values()))))
    sub = {k: v[:n] for k, v in calibration.items()}
    per = max(1, PERCENTILE_VALUES // max(1, -(-n // STATS_BATCH)))
    for b in batches(sub, {i.name: i.shape for i in inputs}, STATS_BATCH,
                     axes=batch_axes_of(inputs)):
        outs = dict(zip(names, sess.run(None, b.feeds), strict=True))
        for t in tensors:
            x = np.asarray(outs[t][: b.count], dtype=np.float64)  # (B, ...) float64
            a = acc[t]
            a["lo"], a["hi"] = min(a["lo"], float(x.min())), max(a["hi"], float(x.max()))
            e = _channel_energy(x, op_of[t])
            a["energy"] = e if a["energy"] is None else a["energy"] + e
            flat = np.abs(x).ravel()
            a["sample"].append(flat[:: max(1, flat.size // per)])
            if t in act_qparams:
                xq = fake_quantize(x, act_qparams[t])
                a["signal"] += float(np.sum(x * x))
                a["noise"] += float(np.sum((x - xq) ** 2))
    out = {}
    for layer in layers:
        w = numpy_helper.to_array(inits[layer.weight]) if layer.weight in inits else np.zeros(0)
        a = acc[layer.input]
        imp = input_energy_weights(nodes[layer.node], w, a["energy"])
        w_sqnr, w_max, w_ratio = weight_stats(w.astype(np.float32), plan, layer.weight, imp)
        w4_sqnr = weight_stats(w.astype(np.float32), plan, layer.weight, imp, bits=4)[0]
        sample = np.concatenate(a["sample"]) if a["sample"] else np.zeros(0)
        quantized = layer.input in act_qparams
        out[layer.node] = TensorStats(
            w_sqnr, w4_sqnr, w_max, w_ratio,
            _sqnr(a["signal"], a["noise"]) if quantized else None,
            a["lo"], a["hi"], outlier_ratio(sample))
    return out
