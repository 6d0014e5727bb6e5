"""Graph rewrites that turn edgequant's ONNX-specific encodings back into exportable ops.

* ``fold_casts``: ``Cast`` / ``Mul`` / ``Add`` / ``Sub`` / ``Div`` of constants → constant
  (the ``fp16`` recipe stores float16 initializers + Cast, weight-only int8 stores
  ``Cast(int8) · scale``; the TFLite exporter stores float16 / int8 itself).
* ``undo_row_dynamic``: the ``w8_dynamic`` recipe's per-row dynamic quantization subgraph
  (Abs → ReduceMax → … → MatMulInteger → Cast → Mul → Mul [→ Add]) becomes one MatMul / Gemm
  with an int8 per-column weight: the TFLite hybrid FULLY_CONNECTED quantizes its input per
  row at run time, the same scheme.
* ``drop_dead``: removes nodes whose outputs nothing reads.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from edgequant.tflite.ingest_types import Node, QConst

_BINARY = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}


def fold_casts(nodes: list[Node], consts: dict[str, np.ndarray],
               shapes: dict[str, tuple[int, ...]]) -> list[Node]:
    """Evaluate Cast and elementwise Mul/Add/Sub/Div nodes whose inputs are all constants."""
    keep = []
    for n in nodes:
        ins = [i for i in n.inputs if i]
        if not ins or not all(i in consts for i in ins):
            keep.append(n)
            continue
        if n.op_type == "Cast":
            dtype = helper.tensor_dtype_to_np_dtype(int(n.attrs["to"]))
            value = consts[ins[0]].astype(dtype)
        elif n.op_type in _BINARY and len(ins) == 2:
            a, b = consts[ins[0]], consts[ins[1]]
            value = _BINARY[n.op_type](a, b).astype(np.result_type(a, b))  # ONNX: same dtype
        else:
            keep.append(n)
            continue
        consts[n.outputs[0]] = value
        shapes[n.outputs[0]] = tuple(value.shape)
    return keep


def _producer(nodes: list[Node], name: str, op: str) -> Node | None:
    p = next((n for n in nodes if name in n.outputs), None)
    return p if p is not None and p.op_type == op else None


def _sole_consumer(nodes: list[Node], name: str, op: str) -> Node | None:
    c = [n for n in nodes if name in n.inputs]
    return c[0] if len(c) == 1 and c[0].op_type == op else None


def undo_row_dynamic(nodes: list[Node], consts: dict[str, np.ndarray],
                     qconsts: dict[str, QConst], shapes: dict[str, tuple[int, ...]],
                     outputs: list[str]) -> list[Node]:
    """Replace each recognised MatMulInteger block by MatMul/Gemm over a quantized weight."""
    out = list(nodes)
    for mmi in [n for n in nodes if n.op_type == "MatMulInteger"]:
        w = mmi.inputs[1]
        chain = [_producer(nodes, mmi.inputs[0], "Cast")]
        for op in ("Clip", "Add", "Round", "Div"):
            chain.append(chain[-1] and _producer(nodes, chain[-1].inputs[0], op))
        cast = _sole_consumer(nodes, mmi.outputs[0], "Cast")
        row = cast and _sole_consumer(nodes, cast.outputs[0], "Mul")
        col = row and _sole_consumer(nodes, row.outputs[0], "Mul")
        if chain[-1] is None or col is None or w not in consts:
            continue
        scale_name = next((i for i in col.inputs if i in consts), None)
        if scale_name is None or consts[w].dtype != np.int8:
            continue
        a = chain[-1].inputs[0]
        scale = np.asarray(consts[scale_name], np.float32).reshape(-1)  # (N,)
        wq = f"{mmi.name}_weight"
        qconsts[wq] = QConst(consts[w], scale, np.zeros(scale.shape, np.int8), 1)
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
        for n in (cast, row, col):
            out.remove(n)
    return drop_dead(out, outputs)


def drop_dead(nodes: list[Node], outputs: list[str]) -> list[Node]:
    """Remove nodes none of whose outputs is read or is a graph output (to a fixed point)."""
    while True:
        used = {i for n in nodes for i in n.inputs} | set(outputs)
        keep = [n for n in nodes if any(o in used for o in n.outputs)]
        if len(keep) == len(nodes):
            return keep
        nodes = keep
