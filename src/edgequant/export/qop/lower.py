"""Lower a QDQ ONNX model to integer-only QOperator ONNX (QLinearConv, QGemm, ...).

``DQ → op [→ Relu|Clip] → Q`` patterns become integer operators that read the DQ's integer
input and write the Q's integer output (per-op rules in :mod:`lower_ops`). Two lowered
neighbours then share the integer tensor and the Q → DQ pair between them disappears;
Q / DQ remain only at the boundaries of float regions (model inputs/outputs, ops with no
integer kernel), so the result is a mixed model when something cannot be lowered.

What happens to Relu / Clip: fused into the producer's requantization as an integer
``Clip(q, Q(lo), Q(hi))`` — exact because quantization is monotonic and saturating — and
dropped entirely when the output range already implies it (uint8 with zero point 0 after
Relu, the usual case). A Relu/Clip between two identical qparams is an integer Clip too.

Result: :class:`LoweringResult` with the model and ``float_nodes`` — every non-Q/DQ node
left in float, as ``(node_name, op_type, reason)``. :func:`lower_to_qop` returns just the
model and logs the float nodes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import onnx
from onnx import helper

from edgequant.errors import UnsupportedOpError
from edgequant.export.qop.emit import Emit
from edgequant.export.qop.index import QdqIndex
from edgequant.export.qop.ops import LOWERINGS, MS
from edgequant.graph.contract import META_FORMAT, META_REQUANTIZATION

log = logging.getLogger(__name__)

#: Requantization modes recorded in metadata (``float``: onnxruntime's float32 multiplier;
#: ``fixedpoint``: int32 multiplier + shift, what TFLite and integer-only hardware do).
REQUANTIZATION_MODES = ("float", "fixedpoint")

#: Nodes removed when nothing reads their outputs any more.
_REMOVABLE_WHEN_DEAD = ("QuantizeLinear", "DequantizeLinear", "Constant")

#: Ops whose outputs are integer tensors whatever their inputs.
_INTEGER_OPS = ("QuantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd",
                "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid",
                "QLinearLeakyRelu", "QLinearConcat", "QLinearSoftmax", "MatMulInteger",
                "ConvInteger")

#: Why a node computing only on constants stays: weight storage (float16, or integers
#: decompressed by Cast/Mul) that onnxruntime folds once when the session starts.
CONSTANT_REASON = ("computes on constants only (weight storage decompression); "
                   "onnxruntime folds it at session start")

#: com.microsoft contrib opset the lowered ops need (onnxruntime registers version 1).
MS_OPSET = 1


@dataclass
class LoweringResult:
    """A lowered model and the nodes left in float, each ``(node_name, op_type, reason)``."""

    model: onnx.ModelProto
    float_nodes: list[tuple[str, str, str]] = field(default_factory=list)
    lowered: int = 0  # number of float ops replaced by integer ops


def lower(model: onnx.ModelProto, requantization: str = "float", *,
          strict: bool = False) -> LoweringResult:
    """Rewrite ``model`` (QDQ, not modified) into integer operators where possible.

    Accepts edgequant's QDQ format (docs/architecture.md) and onnxruntime's
    ``quantize_static(..., quant_format=QuantFormat.QDQ)`` output. Sets metadata
    ``edgequant.requantization`` = ``requantization`` and ``edgequant.format`` = ``qop``.
    ``strict=True`` raises :class:`UnsupportedOpError` naming every node left in float.
    The ops run with onnxruntime's float requantization either way; ``requantization``
    records which arithmetic the reference interpreter / integer targets should apply.
    """
    if requantization not in REQUANTIZATION_MODES:
        raise ValueError(
            f"requantization={requantization!r} is not allowed: use one of {REQUANTIZATION_MODES}"
        )
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto, got {type(model).__name__}")
    work = _with_types(model)
    idx = QdqIndex.build(work)
    replaced: dict[int, Emit] = {}
    consumed: set[int] = set()
    float_nodes: list[tuple[str, str, str]] = []
    integer = _integer_tensors(work)
    constant = _constant_tensors(work)
    for node in work.graph.node:
        if node.op_type in _REMOVABLE_WHEN_DEAD or id(node) in consumed:
            continue
        if node.input and node.input[0] in integer:  # already integer (e.g. lowered before)
            integer.update(node.output)
            continue
        if node.output and node.output[0] in constant:
            float_nodes.append((node.name, node.op_type, CONSTANT_REASON))
            continue
        fn = LOWERINGS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if fn is None:
            float_nodes.append((node.name, node.op_type, "no integer lowering for this op type"))
            continue
        emit = fn(node, idx)
        if isinstance(emit, str):
            float_nodes.append((node.name, node.op_type, emit))
            continue
        replaced[id(node)] = emit
        consumed.update(id(n) for n in emit.consumed)
    nodes: list[onnx.NodeProto] = []
    for node in work.graph.node:
        if id(node) in replaced:
            nodes.extend(replaced[id(node)].nodes)
        elif id(node) not in consumed:
            nodes.append(node)
    _rebuild(work, nodes, idx.new_initializers)
    _set_metadata(work, requantization)
    if strict and float_nodes:
        listed = "; ".join(f"{op} '{name}': {reason}" for name, op, reason in float_nodes)
        raise UnsupportedOpError(
            f"strict lowering: {len(float_nodes)} node(s) would stay in float: {listed}")
    for name, op, reason in float_nodes:
        log.info("left in float: %s '%s': %s", op, name, reason)
    return LoweringResult(work, float_nodes, lowered=len(replaced))


def lower_to_qop(model: onnx.ModelProto, requantization: str = "float") -> onnx.ModelProto:
    """Lowered model only (see :func:`lower`); nodes left in float are logged at INFO."""
    return lower(model, requantization).model


def _integer_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors known to hold integers: typed so, or written by Q / integer-only ops."""
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                   onnx.TensorProto.BFLOAT16}
    g = model.graph
    names = {vi.name for vi in [*g.input, *g.value_info]
             if vi.type.HasField("tensor_type")
             and vi.type.tensor_type.elem_type not in (0, *float_types)}
    for node in g.node:
        if node.op_type in _INTEGER_OPS:
            names.update(node.output)
    return names


def _constant_tensors(model: onnx.ModelProto) -> set[str]:
    """Outputs of nodes (other than Q/DQ) whose every input is an initializer or such an
    output: constant subgraphs such as ``Cast(float16 weight)`` or ``Cast → Mul(scale)``."""
    g = model.graph
    names = {t.name for t in g.initializer}
    for node in g.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        ins = [i for i in node.input if i]
        if ins and all(i in names for i in ins):
            names.update(node.output)
    return names - {t.name for t in g.initializer}


def _with_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with inferred value_info (integer types of DQ inputs)."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except onnx.shape_inference.InferenceError as e:  # keep going: types are a fallback
        log.warning("shape inference failed (%s); lowering without inferred types", e)
        work = onnx.ModelProto()
        work.CopyFrom(model)
        return work


def _rebuild(model: onnx.ModelProto, nodes: list[onnx.NodeProto],
             new_inits: list[onnx.TensorProto]) -> None:
    """Install ``nodes``, drop dead Q/DQ/Constant nodes, unused initializers, stale types."""
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:  # removing a dead DQ can make its Q dead in turn
        used = {n for node in nodes for n in node.input} | outputs
        keep = [n for n in nodes
                if n.op_type not in _REMOVABLE_WHEN_DEAD or any(o in used for o in n.output)]
        if len(keep) == len(nodes):
            break
        nodes = keep
    used = {n for node in nodes for n in node.input} | outputs
    inits = [t for t in [*g.initializer, *new_inits] if t.name in used]
    live = used | {o for node in nodes for o in node.output}
    value_info = [vi for vi in g.value_info if vi.name in live]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    g.value_info.extend(value_info)
    if any(n.domain == MS for n in nodes) and not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, MS_OPSET))


def _set_metadata(model: onnx.ModelProto, requantization: str) -> None:
    """Set (replace) the lowering's metadata keys, keeping everything else."""
    new = {META_REQUANTIZATION: requantization, META_FORMAT: "qop"}
    kept = [p for p in model.metadata_props if p.key not in new]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for k, v in new.items():
        model.metadata_props.add(key=k, value=v)
