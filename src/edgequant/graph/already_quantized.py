"""Already-quantized inputs: detect them, refuse them, or dequantize them on purpose.

Quantizing a model twice compounds two rounding errors and, for a QDQ model, used to end in
an ``AssertionError`` about duplicate initializer names. :func:`find_quantized` lists what
marks a model as quantized:

| finding             | what it looks like                                                 |
|---------------------|--------------------------------------------------------------------|
| ``qoperator``       | integer-only ops (``QOPERATOR_OPS``): QLinearConv, MatMulInteger,  |
|                     | ConvInteger, DynamicQuantizeLinear, MatMulNBits, QGemm…            |
| ``qdq``             | QuantizeLinear / DequantizeLinear nodes                            |
| ``integer weights`` | a Cast of an 8/4/16-bit integer initializer to float (Cast/Mul)    |
| ``fp16 weights``    | a Cast of a float16 / bfloat16 initializer to float                |

:func:`refuse_or_dequantize` refuses such a model naming the first finding, or — with
``requantize=True`` — returns a float model: every constant sub-expression built from
initializers by DequantizeLinear / Cast / Mul / Sub / Reshape / Transpose is folded into a float
initializer (evaluated by ``onnx.reference``), and every activation QuantizeLinear →
DequantizeLinear pair is removed. What cannot be undone that way (QOperator ops, run-time
quantization) is still refused, with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgequant.errors import EdgequantError
from edgequant.graph.contract import META_FORMAT, META_RECIPE

log = logging.getLogger(__name__)

QOPERATOR_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearConcat", "QLinearGlobalAveragePool", "QLinearAveragePool",
    "QLinearSoftmax", "QLinearWhere", "QLinearReduceMean", "QLinearGelu", "QGemm", "QAttention",
    "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul",
    "DynamicQuantizeLSTM", "MatMulIntegerToFloat", "MatMulNBits", "GatherBlockQuantized",
    "QOrderedMatMul", "QOrderedAttention", "QuantizeBFP", "DequantizeBFP",
})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
INTEGER_WEIGHT_TYPES = frozenset({TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4,
                                  TensorProto.UINT4, TensorProto.INT16, TensorProto.UINT16})
HALF_TYPES = frozenset({TensorProto.FLOAT16, TensorProto.BFLOAT16})
#: Ops folded into float initializers when all their inputs are constant (requantize).
FOLDABLE_OPS = frozenset({"DequantizeLinear", "Cast", "Mul", "Sub", "Reshape", "Transpose"})


class AlreadyQuantizedError(EdgequantError, ValueError):
    """The input model is already quantized (and requantizing was not asked or is impossible)."""


@dataclass(frozen=True)
class Finding:
    """One sign that a model is quantized: the node, its op and what kind of quantization."""

    node: str
    op_type: str
    kind: str  # "qoperator" | "qdq" | "integer weights" | "fp16 weights"

    def describe(self) -> str:
        """``node 'conv_q' (QLinearConv): qoperator``."""
        return f"node {self.node!r} ({self.op_type}): {self.kind}"


def find_quantized(model: onnx.ModelProto) -> list[Finding]:
    """Every node of ``model``'s main graph that marks it as quantized, in graph order."""
    inits = {t.name: t for t in model.graph.initializer}
    found = []
    for n in model.graph.node:
        name = n.name or (n.output[0] if n.output else n.op_type)
        if n.op_type in QOPERATOR_OPS:
            found.append(Finding(name, n.op_type, "qoperator"))
        elif n.op_type in QDQ_OPS:
            found.append(Finding(name, n.op_type, "qdq"))
        elif n.op_type == "Cast" and n.input and n.input[0] in inits:
            src = inits[n.input[0]].data_type
            if src in INTEGER_WEIGHT_TYPES:
                found.append(Finding(name, n.op_type, "integer weights"))
            elif src in HALF_TYPES:
                found.append(Finding(name, n.op_type, "fp16 weights"))
    return found


def _evaluate(node: onnx.NodeProto, consts: dict[str, TensorProto],
              opsets: list[onnx.OperatorSetIdProto]) -> list[np.ndarray]:
    """Run one node on constant inputs with ``onnx.reference`` (the ONNX spec's semantics)."""
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in node.input if i]
    graph = helper.make_graph(
        [node], "fold", [], [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None)
                             for o in node.output],
        initializer=[consts[i] for i in dict.fromkeys(inputs)])
    m = helper.make_model(graph, opset_imports=list(opsets))
    return ReferenceEvaluator(m).run(None, {})


def _fold_constants(model: onnx.ModelProto) -> int:
    """Fold FOLDABLE_OPS nodes whose inputs are all initializers; return how many."""
    g = model.graph
    folded = 0
    changed = True
    while changed:
        changed = False
        consts = {t.name: t for t in g.initializer}
        for n in list(g.node):
            if n.op_type not in FOLDABLE_OPS or n.domain not in ("", "ai.onnx"):
                continue
            if not all(i in consts for i in n.input if i) or len(n.output) != 1:
                continue
            (value,) = _evaluate(n, consts, list(model.opset_import))
            g.initializer.append(numpy_helper.from_array(np.asarray(value), n.output[0]))
            g.node.remove(n)
            folded += 1
            changed = True
            break
    return folded


def _drop_activation_pairs(model: onnx.ModelProto) -> int:
    """Remove QuantizeLinear → DequantizeLinear pairs on activations; return how many."""
    g = model.graph
    outputs = {o.name for o in g.output}
    producers = {o: n for n in g.node for o in n.output}
    dropped = 0
    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        src, out = q.input[0], dq.output[0]
        if out in outputs:  # keep the graph output's name
            g.node.insert(list(g.node).index(dq), helper.make_node("Identity", [src], [out],
                                                                   name=f"{dq.name}_float"))
        else:
            for n in g.node:
                for k, name in enumerate(n.input):
                    if name == out:
                        n.input[k] = src
        g.node.remove(dq)
        dropped += 1
    used = {i for n in g.node for i in n.input}
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        if q.output[0] not in used and q.output[0] not in outputs:
            g.node.remove(q)
    return dropped


def _prune_initializers(model: onnx.ModelProto) -> None:
    g = model.graph
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def dequantize_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int, int]:
    """A float copy of ``model``: constant Q/DQ/Cast weight paths folded to float
    initializers, activation Q/DQ pairs removed. Returns (model, folded, pairs dropped);
    raises :class:`AlreadyQuantizedError` when quantization is left that cannot be undone."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    pairs = _drop_activation_pairs(out)
    folded = _fold_constants(out)
    _prune_initializers(out)
    rest = sorted(find_quantized(out), key=lambda f: f.kind != "qoperator")  # the real cause first
    if rest:
        raise AlreadyQuantizedError(
            f"cannot requantize: {rest[0].describe()} cannot be turned back into float "
            "(only constant DequantizeLinear / Cast weights and activation Q/DQ pairs can); "
            "quantize the float original instead")
    keys = {META_RECIPE, META_FORMAT}
    props = [p for p in out.metadata_props if p.key not in keys]
    del out.metadata_props[:]
    out.metadata_props.extend(props)
    return out, folded, pairs


def refuse_or_dequantize(model: onnx.ModelProto, requantize: bool
                         ) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` unchanged if it is float; else refuse it (default) or, with ``requantize``,
    its dequantized float copy and a warning for the report."""
    found = find_quantized(model)
    if not found:
        return model, []
    kinds = sorted({f.kind for f in found})
    if not requantize:
        raise AlreadyQuantizedError(
            f"the input model is already quantized ({', '.join(kinds)}; first: "
            f"{found[0].describe()}); quantize the float original, or pass --requantize "
            "(requantize=True) to dequantize its weights and quantize again")
    out, folded, pairs = dequantize_model(model)
    warning = (f"the input model was already quantized ({', '.join(kinds)}; first: "
               f"{found[0].describe()}): requantized from its dequantized weights "
               f"({folded} constant(s) folded, {pairs} activation Q/DQ pair(s) removed); "
               "the rounding errors of both quantizations add up")
    log.warning("%s", warning)
    return out, [warning]
