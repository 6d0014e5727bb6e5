"""AdaRound over a model: learned up/down rounding of every static Conv / Gemm / MatMul
weight, handed to the Q/DQ writer as fixed integers on the round-to-nearest grid.

Each layer is optimised on its own float input rows (sampled output positions, see
``layer_rows``), fake-quantized with the input's calibrated activation qparams, against the
float layer on the float rows. Rows for a chunk of layers come from one onnxruntime pass of
the float model. Inputs taken from the round-to-nearest quantized model ("asymmetric") were
tried and rejected: each layer then learns to cancel its neighbours' RTN errors, which are
gone once those neighbours are AdaRounded too (docs/adaround.md has the measurement);
inputs from the partially *AdaRounded* model are :mod:`.adaround_sequential`, which
:func:`learned_weights` runs for ``adaround_mode="sequential"`` (the default below 8 bits).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import onnx

from edgequant.graph.info import GraphInfo
from edgequant.ptq.recovery.adaround_layer import adaround_layer, import_torch
from edgequant.ptq.recovery.adaround_modes import adaround_mode
from edgequant.ptq.recovery.adaround_rows import (
    AdaRoundResult,
    StageProgress,
    activation_terms,
    adaround_layers,
    chunks,
    collect,
    layer_entry,
)
from edgequant.ptq.recovery.adaround_sequential import Deployed, sequential_adaround
from edgequant.qparams import QParams
from edgequant.recipes.decisions import QuantPlan
from edgequant.spec import PerTensor, QType

log = logging.getLogger(__name__)


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
    common = {"iters": option(rec, "adaround_iters"),
              "seconds": float(option(rec, "adaround_seconds_per_layer")),
              "rows": option(rec, "adaround_rows"), "seed": option(rec, "seed"), "qdrop": qdrop,
              "act_loss": bool(option(rec, "adaround_act_loss")),
              "progress": progress}
    if mode == "sequential":
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


def adaround_stage(float_model: onnx.ModelProto, qm: onnx.ModelProto, plan: QuantPlan,
                   act: dict[str, QParams], overrides: dict[str, QParams], io: str,
                   calibration, batch_size: int, batch_axes, report: dict,
                   progress: StageProgress | None = None
                   ) -> tuple[onnx.ModelProto, dict[str, tuple[QParams, np.ndarray]]]:
    """PTQ's whole AdaRound step, as :func:`edgequant.quantize` runs it and QAT starts from it:
    :func:`learned_weights`, then the bias correction the recipe asks for after AdaRound
    (``adaround_bias_correction``: inside sequential AdaRound, or the float-input
    ``empirical`` one). Returns ``qm`` (the float model about to get its Q/DQ, with the
    corrected biases) and the learned integers for ``insert_qdq(weight_ints=...)``."""
    from edgequant.ptq.recovery.adaround_bias import adaround_bias_method, correct_adaround_biases

    ints = learned_weights(float_model, qm, plan, act, overrides, io, calibration, batch_size,
                           batch_axes, report, progress)
    if adaround_bias_method(plan.recipe) == "empirical":
        qm, report["adaround"]["bias_correction"] = correct_adaround_biases(
            float_model, qm, plan, ints, calibration, batch_size, batch_axes)
    return qm, ints
