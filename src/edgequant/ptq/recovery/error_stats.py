"""Per-channel statistics of the output error that weight rounding causes, on float inputs.

For every static-quantized Conv / Gemm / MatMul the float model is extended with a twin
node computing ``e = layer(x, W − Ŵ)`` (no bias) on the layer's float input ``x``, where
``Ŵ`` is the weight after quantize → dequantize with the plan's spec. ReduceMean nodes turn
``e``, ``e²`` and the float output ``y²`` into per-channel means, so each batch hands back
three (C,) vectors per layer and memory stays flat in the number of samples. The float
output minus ``e`` is exactly the weight-quantized layer's output (convolution is linear).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.errors import CalibrationError
from edgequant.graph.info import GraphInfo
from edgequant.primitives import fake_quantize
from edgequant.ptq.recovery.stats import PREFIX, Batches
from edgequant.qparams import QParams, qparams_for
from edgequant.recipes.decisions import QuantPlan
from edgequant.runtime.sessions import ort_session

LAYER_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class LayerError:
    """Per-channel means over the calibration data for one layer."""

    node: str
    op_type: str
    weight: str
    bias: str | None
    w: np.ndarray  # float weight, original layout
    w_hat: np.ndarray  # quantize → dequantize of w
    mean_e: np.ndarray | None = None  # (C,) E[e]
    mean_e2: np.ndarray | None = None  # (C,) E[e²]
    mean_y2: np.ndarray | None = None  # (C,) E[y²]

    def weight_sqnr_db(self) -> float:
        """10·log10(Σw² / Σ(w − ŵ)²)."""
        return _db(float(np.sum(self.w.astype(np.float64) ** 2)),
                   float(np.sum((self.w.astype(np.float64) - self.w_hat) ** 2)))

    def output_sqnr_db(self, corrected: bool = False) -> float:
        """Output SQNR of the weight-quantized layer; ``corrected`` removes the mean shift
        per channel (what bias correction does): E[(e − E[e])²] = E[e²] − E[e]²."""
        err = self.mean_e2 - self.mean_e ** 2 if corrected else self.mean_e2
        return _db(float(np.sum(self.mean_y2)), float(np.sum(np.maximum(err, 0.0))))


def _db(signal: float, noise: float) -> float:
    if noise <= 0:
        return float("inf")
    return float(10 * np.log10(max(signal, 1e-30) / noise))


def static_layers(model: onnx.ModelProto, plan: QuantPlan,
                  overrides: Mapping[str, QParams] | None = None) -> list[LayerError]:
    """The Conv / Gemm / MatMul nodes whose constant weight the plan quantizes statically."""
    info = GraphInfo.build(model)
    overrides = overrides or {}
    out = []
    for n in model.graph.node:
        if n.op_type not in LAYER_OPS or len(n.input) < 2 or not info.is_constant(n.input[1]):
            continue
        d = plan.tensors.get(n.input[1])
        if d is None or d.role != "weight" or d.action != "quantize" or d.mode != "static":
            continue
        w = info.const_array(n.input[1]).astype(np.float32)
        qp = overrides.get(n.input[1]) or qparams_for(w, d.spec)
        bias = n.input[2] if len(n.input) > 2 and n.input[2] and info.is_constant(n.input[2]) \
            else None
        out.append(LayerError(n.name or n.output[0], n.op_type, n.input[1], bias, w,
                              fake_quantize(w, qp).astype(np.float32)))
    return out


def _rank(info_model: onnx.ModelProto, name: str) -> int | None:
    for vi in [*info_model.graph.value_info, *info_model.graph.output, *info_model.graph.input]:
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            return len(vi.type.tensor_type.shape.dim)
    return None


def measure(model: onnx.ModelProto, layers: list[LayerError], batches: Batches) -> list[LayerError]:
    """Fill ``mean_e``, ``mean_e2``, ``mean_y2`` of each layer (layers of unknown output rank
    are dropped) and return the measured layers."""
    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    nodes = {n.name or n.output[0]: n for n in model.graph.node}
    outputs, kept = [], []
    for i, layer in enumerate(layers):
        n = nodes[layer.node]
        y = n.output[0]
        rank = layer.w.ndim if n.op_type == "Conv" else (2 if n.op_type == "Gemm"
                                                         else _rank(inferred, y))
        if rank is None:
            continue
        axes = [a for a in range(rank) if a != (1 if n.op_type == "Conv" else rank - 1)]
        p = f"{PREFIX}/{i}"
        aug.graph.initializer.append(numpy_helper.from_array(layer.w - layer.w_hat, f"{p}/dw"))
        aug.graph.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), f"{p}/axes"))
        twin = helper.make_node(n.op_type, [n.input[0], f"{p}/dw"], [f"{p}/e"], name=f"{p}/twin")
        twin.attribute.extend(a for a in n.attribute if a.name != "beta")
        aug.graph.node.extend([
            twin,
            helper.make_node("Mul", [f"{p}/e", f"{p}/e"], [f"{p}/e2"]),
            helper.make_node("Mul", [y, y], [f"{p}/y2"]),
            *[helper.make_node("ReduceMean", [f"{p}/{t}", f"{p}/axes"], [f"{p}/{t}_mean"],
                               keepdims=0) for t in ("e", "e2", "y2")],
        ])
        outputs += [f"{p}/{t}_mean" for t in ("e", "e2", "y2")]
        kept.append(layer)
    if not kept:
        return []
    sess = ort_session(aug, extra_outputs=outputs)
    names = [o.name for o in sess.get_outputs()]
    idx = [names.index(o) for o in outputs]
    sums = [np.zeros(0)] * len(outputs)
    seen = 0
    for feeds in batches():
        k = len(next(iter(feeds.values())))
        try:
            res = sess.run(None, dict(feeds))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CalibrationError(f"onnxruntime failed on a calibration batch: {exc}") from exc
        for j, ix in enumerate(idx):
            v = np.asarray(res[ix], np.float64) * k  # (C,) batch mean × samples
            sums[j] = v if sums[j].size == 0 else sums[j] + v
        seen += k
    if not seen:
        raise CalibrationError("the calibration set is empty: give at least one sample")
    for j, layer in enumerate(kept):
        layer.mean_e, layer.mean_e2, layer.mean_y2 = (sums[3 * j + t] / seen for t in range(3))
    return kept
