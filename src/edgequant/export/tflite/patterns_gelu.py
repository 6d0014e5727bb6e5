"""``fuse_erf_gelu``: the exact-GELU subgraph older exporters write,
``x · 0.5 · (1 + erf(x / √2))``, becomes one ``Gelu`` node (TFLite GELU; TFLite has no ERF).

Accepted forms (``Erf``'s input ``Div(x, √2)`` or ``Mul(x, 1/√2)``, then ``Add(·, 1)``):

* ``Mul(Mul(p, x), 0.5)`` or ``Mul(Mul(p, 0.5), x)`` (operands in either order);
* ``Mul(p, Mul(x, 0.5))`` (Hugging Face's ``x * 0.5 * (1.0 + erf(x / sqrt(2.0)))``).

Every tensor inside the pattern must be read by the pattern alone (it disappears).
"""

from __future__ import annotations

import math

import numpy as np

from edgequant.graph.read_qdq import Node

#: Relative tolerance on the pattern's constants (float32 √2 written as 1.4142135).
RTOL = 1e-5


def _scalar(consts: dict[str, np.ndarray], name: str) -> float | None:
    v = consts.get(name)
    return float(np.ravel(v)[0]) if v is not None and np.size(v) == 1 else None


def _is(consts, name: str, want: float) -> bool:
    v = _scalar(consts, name)
    return v is not None and math.isclose(v, want, rel_tol=RTOL)


def _other(node: Node, name: str) -> str | None:
    ins = [i for i in node.inputs[:2]]
    if len(ins) != 2 or name not in ins:
        return None
    return ins[1] if ins[0] == name else ins[0]


def fuse_erf_gelu(nodes: list[Node], consts: dict[str, np.ndarray],
                  outputs: list[str]) -> list[Node]:
    """Replace each recognised erf-GELU subgraph by a ``Gelu`` node (module docstring)."""
    producer = {o: n for n in nodes for o in n.outputs}
    readers: dict[str, list[Node]] = {}
    for n in nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)

    def sole(name: str, op: str) -> Node | None:
        r = readers.get(name, [])
        ok = len(r) == 1 and r[0].op_type == op and name not in outputs
        return r[0] if ok else None

    drop: set[int] = set()
    replace: dict[int, Node] = {}
    for erf in [n for n in nodes if n.op_type == "Erf"]:
        scale = producer.get(erf.inputs[0])
        if scale is None or len(readers.get(scale.outputs[0], [])) != 1:
            continue
        if scale.op_type == "Div" and _is(consts, scale.inputs[1], math.sqrt(2)):
            x = scale.inputs[0]
        elif scale.op_type == "Mul" and any(_is(consts, i, 1 / math.sqrt(2))
                                            for i in scale.inputs[:2]):
            x = next(i for i in scale.inputs[:2] if not _is(consts, i, 1 / math.sqrt(2)))
        else:
            continue
        add = sole(erf.outputs[0], "Add")
        if add is None or not _is(consts, _other(add, erf.outputs[0]), 1.0):
            continue
        m1 = sole(add.outputs[0], "Mul")
        if m1 is None:
            continue
        o1 = _other(m1, add.outputs[0])
        half = producer.get(o1)
        body: list[Node] = [scale, erf, add, m1]
        if o1 == x or _is(consts, o1, 0.5):  # p·x then ·0.5, or p·0.5 then ·x
            m2 = sole(m1.outputs[0], "Mul")
            want = 0.5 if o1 == x else None
            o2 = _other(m2, m1.outputs[0]) if m2 is not None else None
            if o2 is None or not (_is(consts, o2, 0.5) if want else o2 == x):
                continue
            body.append(m2)
            out = m2.outputs[0]
        elif (half is not None and half.op_type == "Mul" and _other(half, x) is not None
              and _is(consts, _other(half, x), 0.5)
              and len(readers.get(half.outputs[0], [])) == 1):
            body.append(half)
            out = m1.outputs[0]
        else:
            continue
        if any(id(b) in drop for b in body):
            continue
        drop.update(id(b) for b in body)
        # the Gelu sits where the pattern's output was made: every member precedes it
        replace[id(producer[out])] = Node("Gelu", erf.name, [x], [out], {"approximate": "none"})
    kept = []
    for n in nodes:
        if id(n) in replace:
            kept.append(replace[id(n)])
        elif id(n) not in drop:
            kept.append(n)
    return kept
