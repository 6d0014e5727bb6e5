"""AdaRound's data: the layers it rounds, bounded row samples of their inputs (one float
pass per chunk of layers), the result and the per-layer report entry; shared by the
independent (:mod:`.adaround`) and sequential (:mod:`.adaround_sequential`) modes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from edgequant.graph.info import GraphInfo
from edgequant.primitives import fake_quantize
from edgequant.ptq.recovery.layer_rows import (
    Layer,
    following_clip,
    gather_rows,
    pick_rows,
    rows_per_batch,
    weighted_layers,
)
from edgequant.qparams import QParams
from edgequant.recipes.decisions import QuantPlan
from edgequant.runtime.sessions import ort_session

#: Bytes of rows (both copies) collected in one pass over the data.
CHUNK_BYTES = 256 * 2**20

StageProgress = Callable[[str, int, int], None]


@dataclass
class AdaRoundResult:
    """Fixed integer weights per weight tensor (with the qparams they were made for) and a
    per-layer report."""

    weights: dict[str, tuple[QParams, np.ndarray]] = field(default_factory=dict)
    layers: list[dict] = field(default_factory=list)
    bias_correction: dict | None = None  # sequential mode's in-loop correction, if it ran


def adaround_layers(float_model: onnx.ModelProto, rtn_model: onnx.ModelProto, plan: QuantPlan,
                    weight_qparams: dict[str, QParams]) -> list[Layer]:
    """The layers (graph order) whose static weight ``rtn_model`` quantizes with
    ``weight_qparams``."""
    wanted = {t.tensor for t in plan.quantized("weight", mode="static")} & set(weight_qparams)
    qnodes = {n.name or n.output[0] for n in rtn_model.graph.node}
    return [la for la in weighted_layers(float_model, wanted) if la.node in qnodes]


def layer_entry(la: Layer, qp: QParams, res, rows: int) -> dict:
    """The report entry of one AdaRounded layer."""
    return {"node": la.node, "weight": la.weight, "bits": qp.qtype.bits, "rows": rows,
            "mse_rtn": res.mse_rtn, "mse_adaround": res.mse_adaround,
            "iterations": res.iterations, "seconds": round(res.seconds, 3),
            "budget_hit": res.budget_hit, "kept_rtn": res.kept_rtn,
            "undecided": round(res.undecided, 4), "flipped": round(res.flipped, 4)}


def activation_terms(info: GraphInfo, layer: Layer, on: bool
                     ) -> tuple[np.ndarray | None, tuple[float, float] | None]:
    """(bias, clip range) for an activation-aware loss of ``layer`` when ``on`` and a Relu /
    Clip alone reads its output in the float model of ``info``; else (None, None)."""
    if not on:
        return None, None
    node = next(n for n in info.model.graph.node if (n.name or n.output[0]) == layer.node)
    clip = following_clip(info, node)
    if clip is None:
        return None, None
    b = node.input[2] if len(node.input) > 2 and node.input[2] else None
    bias = info.const_array(b).reshape(-1) if b and info.is_constant(b) else None
    return (bias if bias is not None and bias.size == layer.n_out else None), clip


def chunks(layers: list[Layer], rows: int) -> list[list[Layer]]:
    out: list[list[Layer]] = [[]]
    size = 0
    for la in layers:
        b = 2 * 4 * la.max_rows(rows) * la.groups * la.k
        if out[-1] and size + b > CHUNK_BYTES:
            out.append([])
            size = 0
        out[-1].append(la)
        size += b
    return [c for c in out if c]


def collect(float_model, in_qp: dict[str, QParams | None], chunk: list[Layer], batches, samples: int,
            rows: int, seed: int, index: list[int], picks: dict[str, list] | None = None
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Rows (as quantized, float) per layer of ``chunk``: float rows and the same rows
    fake-quantized with the layer's input activation qparams. The rows of the layer at
    ``index[i]`` are drawn with ``np.random.default_rng([seed, index[i]])``; ``picks``, when
    given, receives each layer's :class:`~.layer_rows.Pick` per batch."""
    f_names = [la.input for la in chunk]
    f_sess = ort_session(float_model, extra_outputs=sorted(set(f_names)))
    f_out = [o.name for o in f_sess.get_outputs()]
    rngs = [np.random.default_rng([seed, i]) for i in index]
    parts: dict[str, list] = {la.node: [] for la in chunk}
    for feeds in batches:
        fr = dict(zip(f_out, f_sess.run(None, feeds), strict=True))
        n = len(next(iter(feeds.values())))
        for la, fn, rng in zip(chunk, f_names, rngs, strict=True):
            xf = fr[fn]
            r = rows_per_batch(la.max_rows(rows), n, samples)
            pick = pick_rows(la, xf.shape, r, rng)
            parts[la.node].append(gather_rows(la, xf, pick))
            if picks is not None:
                picks.setdefault(la.node, []).append(pick)
    out = {}
    for la in chunk:
        xf = np.concatenate(parts.pop(la.node))  # (r, G, K)
        qp = in_qp[la.node]
        out[la.node] = (xf if qp is None else fake_quantize(xf, qp), xf)
    return out
