"""Sequential AdaRound: each layer learns its rounding on the inputs the deployed model feeds it.

Layers are visited in graph (topological) order. Layer ``i``'s quantized input rows are read
from the QDQ model in which every earlier layer already holds its learned integers (and,
with ``correct_bias``, its corrected bias) and every activation is quantized: the model
that will ship, up to that layer. The target stays the float model's layer output on float
inputs (``W·x_float``), so each layer absorbs the error its real predecessors leave
(AdaRound paper's asymmetric reconstruction; as in BRECQ, QDrop and AIMET). Inputs from the
round-to-nearest model instead were rejected (docs/adaround.md): those predecessors are
not what ships.

Cost: one onnxruntime pass over the AdaRound samples per layer, through only the graph
prefix that computes the layer's input (:func:`prefix_model`); rows are sampled at the
same positions as the float rows (:func:`~.adaround_rows.collect` records them), so memory stays
that of independent AdaRound, flat in the number of samples.

With ``correct_bias`` the per-channel mean of ``W·x_float − Ŵ·x_deployed`` over the layer's
sampled rows is added to its float bias right after its rounding is learned: bias
correction on the deployed model, one layer at a time (the all-layers-at-once version
diverges; docs/recovery_w4.md), so later layers see the corrected output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx

from edgequant.graph.info import GraphInfo
from edgequant.ptq.recovery.adaround_layer import adaround_layer, import_torch
from edgequant.ptq.recovery.adaround_rows import (
    AdaRoundResult,
    StageProgress,
    activation_terms,
    adaround_layers,
    chunks,
    collect,
    layer_entry,
)
from edgequant.ptq.recovery.cle import set_constant
from edgequant.ptq.recovery.layer_rows import Layer, Pick, gather_rows
from edgequant.qparams import QParams
from edgequant.recipes.decisions import QuantPlan
from edgequant.runtime.sessions import ort_session

log = logging.getLogger(__name__)


@dataclass
class Deployed:
    """What :func:`~edgequant.graph.passes.insert_qdq.insert_qdq` needs to build the QDQ
    model from ``model`` (the float model about to get its Q/DQ; bias corrections are
    written into it in place)."""

    model: onnx.ModelProto
    plan: QuantPlan
    act: dict[str, QParams]
    overrides: dict[str, QParams]
    io: str

    def build(self, ints: dict[str, tuple[QParams, np.ndarray]]) -> onnx.ModelProto:
        """The QDQ model with the integers ``ints`` for the weights learned so far."""
        from edgequant.graph.passes.insert_qdq import insert_qdq

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        return insert_qdq(m, self.plan, self.act, self.overrides, self.io, weight_ints=ints)[0]


def prefix_model(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """The part of ``model`` that computes ``outputs`` (its graph outputs; every graph input
    kept so the same feeds run it). Nodes with subgraphs keep all initializers."""
    need, keep = set(outputs), []
    for node in reversed(model.graph.node):
        if need & set(node.output):
            keep.append(node)
            need |= {i for i in node.input if i}
    keep.reverse()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    del m.graph.output[:]
    m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in outputs)
    if not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for n in keep for a in n.attribute):
        inits = [t for t in m.graph.initializer if t.name in need]
        del m.graph.initializer[:]
        m.graph.initializer.extend(inits)
    return m


def deployed_rows(model: onnx.ModelProto, layer: Layer, tensor: str, batches,
                  picks: list[Pick]) -> np.ndarray:
    """Rows (r, G, K) of ``tensor`` (``layer``'s input) in ``model``, at ``picks`` (one per
    batch), from an onnxruntime run of the prefix of ``model`` that computes it."""
    names = {i.name for i in model.graph.input}
    sess = None if tensor in names else ort_session(prefix_model(model, [tensor]))
    parts = []
    for feeds, pick in zip(batches, picks, strict=True):
        x = feeds[tensor] if sess is None else sess.run(None, feeds)[0]
        parts.append(gather_rows(layer, x, pick))
    return np.concatenate(parts)  # (r, G, K)


def _bias_name(model: onnx.ModelProto, layer: Layer) -> str | None:
    """``layer``'s constant, single-use bias in ``model``, if it has one."""
    info = GraphInfo.build(model)
    node = next(n for n in model.graph.node if (n.name or n.output[0]) == layer.node)
    b = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if b is None or not info.is_constant(b) or len(info.consumers.get(b, [])) != 1:
        return None
    return b if info.const_array(b).shape == (layer.n_out,) else None


def sequential_adaround(float_model: onnx.ModelProto, deployed: Deployed, rtn_model: onnx.ModelProto,
                        weight_qparams: dict[str, QParams], batches: list[dict[str, np.ndarray]],
                        samples: int, *, iters: int, seconds: float, rows: int, seed: int,
                        qdrop: float = 0.0, act_loss: bool = False, correct_bias: bool = False,
                        progress: StageProgress | None = None) -> AdaRoundResult:
    """Learn the rounding of each static weight of ``rtn_model`` (the plan quantized
    round-to-nearest, stored with ``weight_qparams``) in graph order, each layer on its
    input rows from ``deployed`` with the earlier layers' learned integers."""
    torch = import_torch()
    layers = adaround_layers(float_model, rtn_model, deployed.plan, weight_qparams)
    qnodes = {n.name or n.output[0]: n for n in rtn_model.graph.node}
    info = GraphInfo.build(float_model)
    result = AdaRoundResult()
    shifts, skipped = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: bit-identical results from run to run
    try:
        for chunk in chunks(layers, rows):
            picks: dict[str, list[Pick]] = {}
            index = [layers.index(la) for la in chunk]
            collected = collect(float_model, dict.fromkeys([la.node for la in chunk]), chunk,
                                batches, samples, rows, seed, index, picks)
            for la in chunk:
                _, xf = collected.pop(la.node)  # (r, G, K) float rows
                current = deployed.build(result.weights)
                xq = deployed_rows(current, la, qnodes[la.node].input[0], batches,
                                   picks.pop(la.node))  # (r, G, K) as deployed
                qp = weight_qparams[la.weight]
                w = info.const_array(la.weight)
                bias, clip = activation_terms(info, la, act_loss)
                res = adaround_layer(la, w, qp, xq, xf, iters=iters, seconds=seconds,
                                     seed=seed + layers.index(la), qdrop=qdrop, bias=bias,
                                     clip=clip)
                result.weights[la.weight] = (qp, res.ints)
                result.layers.append(layer_entry(la, qp, res, len(xq)))
                if correct_bias:
                    shift = _correct_bias(deployed.model, la, w, qp, res.ints, xq, xf)
                    if shift is None:
                        skipped.append(la.node)
                    else:
                        shifts.append(shift)
                if progress:
                    progress("adaround", len(result.layers), len(layers))
                log.debug("adaround (sequential) %s: mse %.4g → %.4g", la.node, res.mse_rtn,
                          res.mse_adaround)
    finally:
        torch.set_num_threads(threads)
    if correct_bias:
        result.bias_correction = {"method": "sequential", "layers": len(shifts),
                                  "skipped": skipped,
                                  "mean_abs_shift": float(np.mean(shifts)) if shifts else 0.0}
    return result


def _correct_bias(model: onnx.ModelProto, la: Layer, w: np.ndarray, qp: QParams,
                  ints: np.ndarray, xq: np.ndarray, xf: np.ndarray) -> float | None:
    """Add the mean of ``W·xf − Ŵ·xq`` over the rows to ``la``'s bias in ``model``; the mean
    |shift|, or None when the layer has no usable bias."""
    from edgequant.primitives import dequantize

    bias = _bias_name(model, la)
    if bias is None:
        return None
    w_hat = dequantize(ints, qp).astype(np.float64)
    # the layer is linear: the mean output over the rows is the layer of the mean row
    m_f, m_q = xf.mean(0, dtype=np.float64), xq.mean(0, dtype=np.float64)  # (G, K)
    y_f = np.einsum("gok,gk->go", la.to_gok(np.asarray(w, np.float64)), m_f)  # (G, O)
    y_q = np.einsum("gok,gk->go", la.to_gok(w_hat), m_q)  # (G, O)
    shift = (y_f - y_q).reshape(-1)  # (C,) channel g·O + o
    b = GraphInfo.build(model).const_array(bias).astype(np.float64)  # (C,)
    set_constant(model, bias, b + shift)
    return float(np.mean(np.abs(shift)))
