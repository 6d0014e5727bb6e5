"""``convert`` for :class:`~edgequant.torch.graph_qat.GraphQAT`: write the trained values and
qparams into the graph the plan was resolved on, through the one Q/DQ writer.

Nothing is re-exported or re-calibrated: the trained initializers replace the float ones
under their own names, and :func:`edgequant.graph.passes.insert_qdq.insert_qdq` executes the
same plan with the trained activation, weight and constant qparams. The result is a
:class:`~edgequant.ptq.quantizer.QuantizedModel`, so ``.save(path)`` writes QDQ ONNX,
``.save(path, format="qop")`` integer-only ONNX and ``.save("m.tflite")`` a TFLite model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from edgequant.errors import EdgequantError
from edgequant.graph.contract import META_FORMAT, META_RECIPE
from edgequant.graph.passes.gather_weights import TABLE_MODES, quantize_gathers
from edgequant.graph.passes.insert_qdq import insert_qdq
from edgequant.ptq.quantizer import QuantizedModel, int4_conv_note
from edgequant.qparams import QParams
from edgequant.torch.export import save_atomic
from edgequant.torch.graph_qat import GraphQAT

log = logging.getLogger(__name__)


def _same(a: QParams, b: QParams) -> bool:
    return (a.qtype == b.qtype
            and np.array_equal(np.asarray(a.scale, np.float32).view(np.uint32),
                               np.asarray(b.scale, np.float32).view(np.uint32))
            and np.array_equal(a.zero_point, b.zero_point))


def trained_graph(qat: GraphQAT) -> onnx.ModelProto:
    """A copy of the prepared float graph holding the trained initializer values."""
    model = onnx.ModelProto()
    model.CopyFrom(qat.graph)
    trained = set(qat.initializer_names())
    for i, t in enumerate(model.graph.initializer):
        if t.name in trained:
            value = qat.value(t.name).detach().cpu().numpy().astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, t.name))
    return model


@torch.no_grad()
def _refresh_weights(qat: GraphQAT) -> None:
    """Weight / constant qparams of the *current* values (an optimizer step may have moved
    the weights since the last forward; learned LSQ scales are kept as trained). A learned
    rounding's weight parameter is rewritten to the grid points of its *current* hardened
    integers at the (possibly bias-raised) scale: the last optimizer step may have flipped
    roundings or moved the scale since the forward that last wrote it."""
    from edgequant.torch.learned_rounding import LearnedRoundingQuantizer

    for key in qat.weight_qparams():
        q = qat.quantizer(key)
        fitted = qat.fit_weight_qparams(key)  # int32-bias fit, exactly as the forward does
        if isinstance(q, LearnedRoundingQuantizer):
            q(qat.value(key))  # writes s · (q − z) of the hardened integers into the weight
            continue
        if fitted:
            continue
        if not q.learn_scale or not bool(q.initialized):
            q(qat.value(key))


@torch.no_grad()
def convert_graph(qat: GraphQAT, path: str | os.PathLike | None = None) -> QuantizedModel:
    """The QDQ model computing what ``qat`` computes in eval mode (see the module docstring)."""
    unobserved = [key for key, k in qat._key.items()
                  if k in qat.act_quant and not bool(qat.act_quant[k].observed)]
    if unobserved:
        raise EdgequantError(
            f"{len(unobserved)} activation quantizer(s) have seen no data (e.g. "
            f"{unobserved[:3]}): train the QAT model, or prepare it with calibration data, "
            "before converting")
    _refresh_weights(qat)
    plan = qat.plan
    acts = qat.activation_qparams()
    weights: dict[str, QParams] = {}
    for key, qp in qat.weight_qparams().items():
        (acts if plan.tensors[key].role == "constant" else weights)[key] = qp
    model = trained_graph(qat)
    tables: dict[str, QParams] = {}
    if any(d.mode in TABLE_MODES for d in plan.quantized("weight")):  # embedding tables, as PTQ
        model, tables = quantize_gathers(model, plan, weight_qparams=weights)
    model, used, notes = insert_qdq(model, plan, act_qparams=acts,
                                    weight_qparams=weights, io="float")
    used.update(tables)
    for key, qp in {**acts, **weights}.items():
        if key in used and not _same(used[key], qp):
            raise EdgequantError(f"{key!r}: the Q/DQ qparams differ from training's")
    float_bias = sorted(d.tensor for d in plan.tensors.values()
                        if d.role == "bias" and d.action == "quantize" and d.tensor not in used)
    if sorted(qat.bias_float) != float_bias:
        log.warning("convert: biases kept float differ from training's: converted %s, "
                    "trained %s", float_bias, sorted(qat.bias_float))
    conv4 = int4_conv_note(model)
    if conv4:
        notes.append(conv4)
    for note in notes:
        log.info("convert: %s", note)
    props = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**props, META_RECIPE: qat.recipe_name,
                                        META_FORMAT: "qdq"})
    onnx.checker.check_model(model)
    report = {
        "recipe": qat.recipe_name,
        "mode": "qat",
        "quantized_activations": sorted(k for k, d in plan.tensors.items()
                                        if d.role == "activation" and k in used),
        "float_nodes": [{"node": d.node, "op_type": d.op_type, "reason": d.reason}
                        for d in plan.float_nodes()],
        "float_biases": float_bias,
        "notes": notes,
    }
    log.info("convert: %d quantized tensors carry trained qparams", len(used))
    result = QuantizedModel(model, plan, used, report)
    if path is not None:
        save_atomic(model, Path(path))
    return result
