"""Float-graph clean-up before quantization: opset 21, constant folding, BN folding.

All three keep the model's float outputs (BN folding to float rounding), so the ``fp32``
recipe is these passes alone and still a deployable model.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

from edgequant.errors import EdgequantError
from edgequant.graph.info import GraphInfo, attr
from edgequant.graph.passes.integer_forms import integer_forms, tensor_ranks
from edgequant.graph.passes.normalize import (
    lower_ir_version,
    normalize,
    raise_ir_version,
    route_subgraph_inputs,
    sink_subgraph_initializers,
    subgraph_references,
)

log = logging.getLogger(__name__)

#: Q/DQ of int4, int16 and blocked quantization need opset 21 of the default domain.
TARGET_OPSET = 21
#: The oldest default-domain opset ``onnx.version_converter`` upgrades reliably.
MIN_OPSET = 7


def default_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset version."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def to_target_opset(model: onnx.ModelProto, notes: list[str] | None = None) -> onnx.ModelProto:
    """Raise the default-domain opset to 21 (models at 21 or newer are left alone).

    Opsets 7 and newer are upgraded with ``onnx.version_converter``; the upgrade is logged
    and appended to ``notes``.
    """
    old = default_opset(model)
    if old >= TARGET_OPSET:
        return model
    if old < MIN_OPSET:
        raise EdgequantError(f"the model's default opset {old} is too old: opset "
                             f"{MIN_OPSET} or newer is allowed")
    try:
        converted = onnx.version_converter.convert_version(model, TARGET_OPSET)
    except Exception as exc:  # the converter raises RuntimeError / ConvertError
        raise EdgequantError(
            f"cannot convert the model from opset {old} to {TARGET_OPSET}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    raise_ir_version(converted)
    msg = f"model upgraded from opset {old} to {TARGET_OPSET} (onnx.version_converter)"
    log.info(msg)
    if notes is not None:
        notes.append(msg)
    return converted


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constant subgraphs and drop unused nodes (onnxscript's optimizer)."""
    try:
        import onnxscript.optimizer as opt

        folded = opt.optimize(model, num_iterations=2)
        return folded if isinstance(folded, onnx.ModelProto) else model
    except Exception as exc:  # folding is an optimisation: keep the model if it fails
        log.warning("constant folding skipped: %s", exc)
        return model


def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold ``BatchNormalization`` (inference form) into the preceding ``Conv``.

    ``w' = w · γ/√(σ²+ε)`` per output channel and ``b' = (b − μ) · γ/√(σ²+ε) + β``.
    Only when the Conv output feeds the BN alone and every BN parameter is constant.
    """
    info = GraphInfo.build(model)
    remove: set[int] = set()
    rename: dict[str, str] = {}
    in_subgraphs = subgraph_references(model)  # renaming these would break a subgraph
    for bn in model.graph.node:
        if bn.op_type != "BatchNormalization" or (len(bn.output) > 1 and any(bn.output[1:])):
            continue
        conv = info.producer.get(bn.input[0])
        if bn.input[0] in in_subgraphs or bn.output[0] in in_subgraphs:
            continue
        if (conv is None or conv.op_type != "Conv" or len(info.consumers[bn.input[0]]) != 1
                or not all(info.is_constant(i) for i in bn.input[1:5])
                or not info.is_constant(conv.input[1])
                or (len(conv.input) > 2 and conv.input[2] and not info.is_constant(conv.input[2]))):
            continue
        gamma, beta, mean, var = (info.const_array(i).astype(np.float64) for i in bn.input[1:5])
        eps = attr(bn, "epsilon", 1e-5)
        w = info.const_array(conv.input[1]).astype(np.float64)  # (O, I/g, kh, kw)
        b = (info.const_array(conv.input[2]).astype(np.float64)
             if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0]))
        k = gamma / np.sqrt(var + eps)  # (O,)
        w_new = (w * k.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
        b_new = ((b - mean) * k + beta).astype(np.float32)
        wname, bname = f"{conv.name or conv.output[0]}_folded_weight", \
            f"{conv.name or conv.output[0]}_folded_bias"
        model.graph.initializer.append(numpy_helper.from_array(w_new, wname))
        model.graph.initializer.append(numpy_helper.from_array(b_new, bname))
        del conv.input[1:]
        conv.input.extend([wname, bname])
        rename[bn.output[0]] = conv.output[0]
        remove.add(id(bn))
    if not remove:
        return model
    kept = [n for n in model.graph.node if id(n) not in remove]
    outputs = {o.name for o in model.graph.output}
    for n in kept:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    for conv_out_of_bn, conv_out in rename.items():
        if conv_out_of_bn in outputs:  # keep the graph's output name: rename the conv output
            for n in kept:
                for i, o in enumerate(n.output):
                    if o == conv_out:
                        n.output[i] = conv_out_of_bn
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {i for n in model.graph.node for i in n.input} | in_subgraphs
    keep_inits = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep_inits)
    log.info("folded %d BatchNormalization node(s)", len(remove))
    return model


def reduce_mean_to_global_pool(model: onnx.ModelProto) -> onnx.ModelProto:
    """``ReduceMean`` over the spatial axes of a 4-D tensor → ``GlobalAveragePool``.

    Exporters write global average pooling as ``mean(dim=(2, 3))``; as GlobalAveragePool it
    has integer kernels (QLinearGlobalAveragePool, TFLite MEAN). ``keepdims=0`` adds a
    ``Flatten`` so the output shape stays (N, C).
    """
    info = GraphInfo.build(model)
    shapes = tensor_ranks(model)
    out = []
    for node in model.graph.node:
        axes = attr(node, "axes")
        if node.op_type == "ReduceMean" and len(node.input) > 1 and info.is_constant(node.input[1]):
            axes = info.const_array(node.input[1]).tolist()
        rank = shapes.get(node.input[0]) if node.input else None
        if (node.op_type != "ReduceMean" or rank != 4 or axes is None
                or sorted(a % 4 for a in axes) != [2, 3]):
            out.append(node)
            continue
        y = node.output[0]
        if attr(node, "keepdims", 1):
            out.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [y],
                                             name=node.name))
        else:
            out += [onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [f"{y}_pooled"],
                                          name=node.name),
                    onnx.helper.make_node("Flatten", [f"{y}_pooled"], [y], axis=1,
                                          name=f"{node.name}_flatten")]
    del model.graph.node[:]
    model.graph.node.extend(out)
    return model


def strip_debug_info(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop per-node doc strings and metadata (exporter stack traces) and cached value_info.

    torch's exporter stores a stack trace and module path on every node: tens of kilobytes
    that nothing reads at run time. Model-level metadata (``edgequant.*``) is kept.
    """
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    model.graph.doc_string = ""
    del model.graph.value_info[:]
    return model


def prepare_float(model: onnx.ModelProto, notes: list[str] | None = None) -> onnx.ModelProto:
    """normalize → opset 21 → fold constants → fold BN → Sum / Div / lone BN as Add / Mul
    (:mod:`integer_forms`) → canonical global pool → drop debug info.

    ``notes`` (when given) receives one line per load-time change the report should show
    (initializers dropped from the inputs, ``-1`` dims made symbolic, opset upgrade,
    subgraphs kept float).
    """
    notes = [] if notes is None else notes
    notes += normalize(model)
    model = to_target_opset(model, notes)
    notes += lower_ir_version(model)
    model = fold_constants(model)
    sink_subgraph_initializers(model)
    route_subgraph_inputs(model)
    model = fold_batchnorm(model)
    model = integer_forms(model, notes)
    model = reduce_mean_to_global_pool(model)
    return strip_debug_info(model)
