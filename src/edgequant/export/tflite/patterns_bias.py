"""``fuse_matmul_bias``: ``MatMul(x, W) → Add(·, b)`` (a constant 2-D weight, a constant bias
along the last axis) becomes one ``MatMul(x, W, b)`` node, exported as one FULLY_CONNECTED
with its bias (how PyTorch's ``nn.Linear`` on 3-D input exports: MatMul + Add).

Why: the bias then lives in the kernel's accumulator (int32 at ``input_scale · weight_scale``
for integer nodes) instead of a separate int8 ADD whose constant would be quantized to 8
bits; and LiteRT's XNNPACK delegate refuses int8 ADDs whose scales are far apart (BERT's
tiny key biases), which splits the graph. Only when MatMul output and Add output are in the
same domain (both with activation qparams, or both float): a float bias Add after an int8
MatMul stays an ADD, as the QDQ graph says.
"""

from __future__ import annotations

import numpy as np

from edgequant.graph.read_qdq import QDQGraph


def fuse_matmul_bias(graph: QDQGraph) -> None:
    """Fold each eligible bias Add into its MatMul (module docstring), in place."""
    readers: dict[str, list] = {}
    for n in graph.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    drop: set[int] = set()
    for mm in graph.nodes:
        if mm.op_type != "MatMul" or len(mm.inputs) != 2 or mm.attrs.get("_act"):
            continue
        w = graph.value(mm.inputs[1]) if mm.inputs[1] in graph.consts or \
            mm.inputs[1] in graph.qconsts else None
        y = mm.outputs[0]
        users = readers.get(y, [])
        if w is None or w.ndim != 2 or y in graph.outputs or len(users) != 1:
            continue
        add = users[0]
        if add.op_type != "Add" or len(add.inputs) != 2:
            continue
        b = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
        bias = graph.value(b)
        if bias is None or bias.size != w.shape[1] or bias.ndim < 1 or any(
                d != 1 for d in bias.shape[:-1]):
            continue
        if (y in graph.act_q) != (add.outputs[0] in graph.act_q):
            continue
        if b not in graph.consts and b not in graph.qconsts:
            continue
        if bias.ndim != 1:
            graph.consts[f"{b}_vector"] = np.asarray(bias, np.float32).reshape(-1)
            b = f"{b}_vector"
        mm.inputs = [*mm.inputs, b]
        mm.outputs = list(add.outputs)
        if "_act" in add.attrs:
            mm.attrs["_act"] = add.attrs["_act"]
        drop.add(id(add))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]
