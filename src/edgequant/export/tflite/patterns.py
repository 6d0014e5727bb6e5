"""Graph rewrites that turn edgequant's ONNX-specific encodings back into exportable ops.

* ``fold_casts``: any node whose inputs are all constants (Q/DQ excepted) → constant,
  evaluated with ``onnx.reference`` (the ``fp16`` recipe stores float16 initializers + Cast,
  weight-only int8 stores ``Cast(int8) · scale``, PyTorch's ``F.pad`` exports a
  ConstantOfShape / Slice / Concat chain computing the pads).
* ``undo_row_dynamic``: the ``w8_dynamic`` recipe's per-row dynamic quantization subgraph
  (Abs → ReduceMax → … → QuantizeLinear → MatMulIntegerToFloat → Mul [→ Add]; or the older
  … → Cast → MatMulInteger → Cast → Mul → Mul [→ Add]) becomes one MatMul / Gemm
  with an int8 per-column weight: the TFLite hybrid FULLY_CONNECTED quantizes its input per
  row at run time, the same scheme.
* ``drop_dead``: removes nodes whose outputs nothing reads.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from edgequant.graph.read_qdq import Node, QConst
from edgequant.qparams import QParams
from edgequant.spec import PerChannel, QType

#: Never folded: a DequantizeLinear of an integer initializer *is* the quantized weight.
NOT_FOLDED = {"QuantizeLinear", "DequantizeLinear"}


def fold_casts(nodes: list[Node], consts: dict[str, np.ndarray],
               shapes: dict[str, tuple[int, ...]], opset: int = 21) -> list[Node]:
    """Evaluate (``onnx.reference``) every node whose inputs are all constants."""
    from onnx.reference import ReferenceEvaluator

    keep = []
    for n in nodes:
        ins = [i for i in n.inputs if i]
        if n.op_type == "Shape" and _static(shapes.get(ins[0])):
            # the batch is fixed by now, so a Shape (torch's dynamic flatten) is a constant
            full = np.array(shapes[ins[0]], np.int64)
            start, end = n.attrs.get("start", 0), n.attrs.get("end", len(full))
            consts[n.outputs[0]] = full[start:end]
            shapes[n.outputs[0]] = consts[n.outputs[0]].shape
            continue
        if n.op_type in NOT_FOLDED or not all(i in consts for i in ins):
            keep.append(n)
            continue
        attrs = {k: v for k, v in n.attrs.items() if not k.startswith("_")}
        proto = helper.make_node(n.op_type, n.inputs, n.outputs, **attrs)
        graph = helper.make_graph(
            [proto], "fold",
            [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(consts[i].dtype),
                                           consts[i].shape) for i in ins],
            [helper.make_tensor_value_info(o, 0, None) for o in n.outputs])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        values = ReferenceEvaluator(model).run(None, {i: consts[i] for i in ins})
        for o, v in zip(n.outputs, values, strict=True):
            consts[o] = np.asarray(v)
            shapes[o] = tuple(consts[o].shape)
    return keep


def _static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def _producer(nodes: list[Node], name: str, op: str) -> Node | None:
    p = next((n for n in nodes if name in n.outputs), None)
    return p if p is not None and p.op_type == op else None


def _sole_consumer(nodes: list[Node], name: str, op: str) -> Node | None:
    c = [n for n in nodes if name in n.inputs]
    return c[0] if len(c) == 1 and c[0].op_type == op else None


def undo_row_dynamic(nodes: list[Node], consts: dict[str, np.ndarray],
                     qconsts: dict[str, QConst], shapes: dict[str, tuple[int, ...]],
                     outputs: list[str]) -> list[Node]:
    """Replace each recognised per-row dynamic block by MatMul/Gemm over a quantized weight."""
    out = list(nodes)
    for mmi in [n for n in nodes if n.op_type in ("MatMulInteger", "MatMulIntegerToFloat")]:
        w = mmi.inputs[1]
        found = _row_block(nodes, mmi)
        if found is None or w not in consts:
            continue
        a, scale_name, col, dead = found
        if scale_name not in consts or consts[w].dtype != np.int8:
            continue
        scale = np.asarray(consts[scale_name], np.float32).reshape(-1)  # (N,)
        wq = f"{mmi.name}_weight"
        qp = QParams(scale, np.zeros(scale.shape, np.int8), QType(8, True), PerChannel(1))
        qconsts[wq] = QConst(consts[w], qp)
        shapes[wq] = tuple(consts[w].shape)
        y = col.outputs[0]
        add = _sole_consumer(nodes, y, "Add") if y not in outputs else None
        bias = next((i for i in add.inputs if i in consts), None) if add is not None else None
        if bias is not None and len(shapes.get(a, ())) == 2 and consts[bias].ndim == 1:
            new = Node("Gemm", mmi.name, [a, wq, bias], list(add.outputs), {})
            out.remove(add)
        else:
            new = Node("MatMul", mmi.name, [a, wq], [y], {})
        out[out.index(mmi)] = new
        for n in dead:
            out.remove(n)
    return drop_dead(out, outputs)


def _row_block(nodes: list[Node], mmi: Node) -> tuple[str, str, Node, list[Node]] | None:
    """(float input A, per-column weight scale, last node, nodes replaced besides ``mmi``)."""
    if mmi.op_type == "MatMulIntegerToFloat":
        ql = _producer(nodes, mmi.inputs[0], "QuantizeLinear")
        row = _sole_consumer(nodes, mmi.outputs[0], "Mul")
        if ql is None or row is None or len(mmi.inputs) < 4:
            return None
        return ql.inputs[0], mmi.inputs[3], row, [row]
    chain = [_producer(nodes, mmi.inputs[0], "Cast")]
    for op in ("Clip", "Add", "Round", "Div"):
        chain.append(chain[-1] and _producer(nodes, chain[-1].inputs[0], op))
    cast = _sole_consumer(nodes, mmi.outputs[0], "Cast")
    row = cast and _sole_consumer(nodes, cast.outputs[0], "Mul")
    col = row and _sole_consumer(nodes, row.outputs[0], "Mul")
    if chain[-1] is None or col is None:
        return None
    return chain[-1].inputs[0], col.inputs[1], col, [cast, row, col]


def drop_dead(nodes: list[Node], outputs: list[str]) -> list[Node]:
    """Remove nodes none of whose outputs is read or is a graph output (to a fixed point)."""
    while True:
        used = {i for n in nodes for i in n.inputs} | set(outputs)
        keep = [n for n in nodes if any(o in used for o in n.outputs)]
        if len(keep) == len(nodes):
            return keep
        nodes = keep
