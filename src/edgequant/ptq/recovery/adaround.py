"""AdaRound over a model: learned up/down rounding of every static Conv / Gemm / MatMul
weight, handed to the Q/DQ writer as fixed integers on the round-to-nearest grid.

Each layer is optimised on its own float input rows (sampled output positions, see
``layer_rows``), fake-quantized with the input's calibrated activation qparams, against the
float layer on the float rows. Rows for a chunk of layers come from one onnxruntime pass of
the float model. Inputs taken from the round-to-nearest quantized model ("asymmetric") were
tried and rejected: each layer then learns to cancel its neighbours' RTN errors, which are
gone once those neighbours are AdaRounded too (docs/adaround.md has the measurement).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from edgequant.graph.info import GraphInfo
from edgequant.primitives import fake_quantize
from edgequant.ptq.recovery.adaround_layer import adaround_layer, import_torch
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
from edgequant.spec import PerTensor, QType

log = logging.getLogger(__name__)

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


def adaround(float_model: onnx.ModelProto, rtn_model: onnx.ModelProto, plan: QuantPlan,
             weight_qparams: dict[str, QParams], batches: list[dict[str, np.ndarray]],
             samples: int, *, iters: int, seconds: float, rows: int, seed: int,
             qdrop: float = 0.0, act_loss: bool = False,
             progress: StageProgress | None = None) -> AdaRoundResult:
    """Learn the rounding of each static weight that ``rtn_model`` (the same plan quantized
    round-to-nearest) stores with ``weight_qparams``; ``batches`` hold ``samples`` samples;
    ``qdrop``: see :func:`~.adaround_layer.adaround_layer`; ``act_loss``: the loss includes
    the Relu / Clip after a layer (:func:`activation_terms`)."""
    torch = import_torch()
    layers = adaround_layers(float_model, rtn_model, plan, weight_qparams)
    qnodes = {n.name or n.output[0]: n for n in rtn_model.graph.node}
    info, rtn_info = GraphInfo.build(float_model), GraphInfo.build(rtn_model)
    in_qp = {la.node: _input_qparams(rtn_info, qnodes[la.node]) for la in layers}
    result = AdaRoundResult()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: bit-identical results from run to run
    try:
        done = 0
        for chunk in chunks(layers, rows):
            collected = collect(float_model, in_qp, chunk, batches, samples, rows, seed,
                                [layers.index(la) for la in chunk])
            for la in chunk:
                xq, xf = collected.pop(la.node)
                qp = weight_qparams[la.weight]
                bias, clip = activation_terms(info, la, act_loss)
                res = adaround_layer(la, info.const_array(la.weight), qp, xq, xf, iters=iters,
                                     seconds=seconds, seed=seed + layers.index(la), qdrop=qdrop,
                                     bias=bias, clip=clip)
                result.weights[la.weight] = (qp, res.ints)
                result.layers.append(layer_entry(la, qp, res, len(xq)))
                done += 1
                if progress:
                    progress("adaround", done, len(layers))
                log.debug("adaround %s: mse %.4g → %.4g", la.node, res.mse_rtn, res.mse_adaround)
    finally:
        torch.set_num_threads(threads)
    return result


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


def _input_qparams(info: GraphInfo, qnode: onnx.NodeProto) -> QParams | None:
    """The per-tensor qparams of the DequantizeLinear feeding ``qnode``'s input, if any."""
    dq = info.producer.get(qnode.input[0])
    if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3:
        return None
    scale, zp = info.const_array(dq.input[1]), info.const_array(dq.input[2])
    if scale.ndim:
        return None
    signed = zp.dtype.kind == "i"
    return QParams(scale.astype(np.float32), zp, QType(zp.dtype.itemsize * 8, signed),
                   PerTensor())


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


#: ``adaround_mode="auto"`` runs sequential AdaRound for weights with fewer bits than this:
#: on EfficientNet-Lite0 w4a8 it beat independent AdaRound (bench/ptq_recovery.py); 8-bit
#: weights keep the independent mode measured before (docs/adaround.md).
SEQUENTIAL_BELOW_BITS = 8


def adaround_mode(recipe) -> str:
    """``independent`` or ``sequential``: the recipe's ``adaround_mode`` option, ``auto``
    decided by the recipe's weight bits."""
    from edgequant.recipes.options import option

    value = option(recipe, "adaround_mode")
    if value != "auto":
        return value
    bits = recipe.weights.qtype.bits if recipe.weights is not None else 32
    return "sequential" if bits < SEQUENTIAL_BELOW_BITS else "independent"


def learned_weights(float_model: onnx.ModelProto, qm: onnx.ModelProto, plan: QuantPlan,
                    act: dict[str, QParams], overrides: dict[str, QParams], io: str,
                    calibration, batch_size: int, batch_axes, report: dict,
                    progress: StageProgress | None = None
                    ) -> dict[str, tuple[QParams, np.ndarray]]:
    """The quantizer's AdaRound step: quantize a copy of ``qm`` round-to-nearest, learn the
    rounding of its static weights from the recipe's options, record ``report["adaround"]``,
    and return the integers for :func:`~edgequant.graph.passes.insert_qdq.insert_qdq`.

    ``adaround_mode="sequential"`` (:mod:`.adaround_sequential`) also corrects the biases of
    ``qm`` in place when the recipe asks for bias correction after AdaRound."""
    from edgequant.graph.passes.insert_qdq import insert_qdq
    from edgequant.ptq.recovery.adaround_bias import adaround_bias_method
    from edgequant.ptq.recovery.samples import calibration_batches
    from edgequant.recipes.options import option

    import_torch()  # fail before any work when torch is missing
    start = time.perf_counter()
    rec = plan.recipe
    rtn = onnx.ModelProto()
    rtn.CopyFrom(qm)
    rtn, used, _ = insert_qdq(rtn, plan, act, overrides, io)
    batches, n = calibration_batches(float_model, calibration, batch_size, batch_axes,
                                     limit=option(rec, "adaround_samples"))
    mode, qdrop = adaround_mode(rec), float(option(rec, "adaround_qdrop"))
    act_loss = option(rec, "adaround_act_loss")  # auto: in sequential mode
    common = {"iters": option(rec, "adaround_iters"),
              "seconds": float(option(rec, "adaround_seconds_per_layer")),
              "rows": option(rec, "adaround_rows"), "seed": option(rec, "seed"), "qdrop": qdrop,
              "act_loss": (act_loss == "auto" and mode == "sequential") or act_loss is True,
              "progress": progress}
    if mode == "sequential":
        from edgequant.ptq.recovery.adaround_sequential import Deployed, sequential_adaround

        deployed = Deployed(qm, plan, act, overrides, io)
        result = sequential_adaround(float_model, deployed, rtn, used, batches, n,
                                     correct_bias=adaround_bias_method(rec) == "sequential",
                                     **common)
    else:
        result = adaround(float_model, rtn, plan, used, batches, n, **common)
    report["adaround"] = {"samples": n, "mode": mode, "qdrop": qdrop,
                          "wall_seconds": round(time.perf_counter() - start, 1),
                          "layers": result.layers}
    if result.bias_correction is not None:
        report["adaround"]["bias_correction"] = result.bias_correction
    return result.weights
