"""Insert Q/DQ nodes carrying *given* qparams into a float ONNX graph (QAT convert).

Follows docs/architecture.md: opset 21; an activation ``t`` becomes ``QuantizeLinear(t) →
t_quantized → DequantizeLinear → t_dequantized`` read by every consumer; weights become integer
initializers ``w_quantized`` (int8 / int4, per channel on axis 0 for Conv ``(O, I/g, kh, kw)``
and Gemm ``transB=1`` ``(O, I)``) read through ``DequantizeLinear``; biases of ops whose input
is quantized become int32 with ``scale = input_scale · weight_scale``.

Qparams are propagated unchanged through ops whose output is exactly representable on the
input's grid (MaxPool, Relu, reshapes): a QDQ pair there is numerically a no-op, so the
graph still computes what the fake-quant model computed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.contract import META_RECIPE
from edgequant.primitives import quantize
from edgequant.qparams import QParams, bias_qparams
from edgequant.spec import PerChannel

#: Ops whose output takes the input's qparams (identical grid on both sides, exact).
PASS_THROUGH = frozenset({"MaxPool", "Relu", "Reshape", "Flatten", "Transpose", "Squeeze",
                          "Unsqueeze", "Identity"})
_WEIGHTED = frozenset({"Conv", "Gemm"})


def _int_tensor(name: str, q: np.ndarray, qp: QParams) -> onnx.TensorProto:
    """An integer initializer of ``qp.qtype``'s ONNX type (int4 is packed by onnx.helper)."""
    dtype = qp.qtype.onnx_dtype
    if qp.qtype.container_bits == 4:
        return helper.make_tensor(name, dtype, list(q.shape), q.astype(np.int64).ravel().tolist())
    return numpy_helper.from_array(np.asarray(q, dtype=qp.qtype.numpy_dtype), name)


def _params(name: str, qp: QParams) -> list[onnx.TensorProto]:
    """``name_scale`` (float32) and ``name_zero_point`` (the qtype) initializers."""
    scale = numpy_helper.from_array(np.asarray(qp.scale, np.float32), f"{name}_scale")
    zp = _int_tensor(f"{name}_zero_point", np.asarray(qp.zero_point), qp)
    return [scale, zp]


def _dq(name: str, qp: QParams, src: str, dst: str | None = None) -> onnx.NodeProto:
    kw = {"axis": qp.granularity.axis} if isinstance(qp.granularity, PerChannel) \
        and np.asarray(qp.scale).ndim else {}
    return helper.make_node("DequantizeLinear", [src, f"{name}_scale", f"{name}_zero_point"],
                            [dst or f"{name}_dequantized"], name=f"{name}_DequantizeLinear",
                            **kw)


def propagate(graph: onnx.GraphProto, activations: dict[str, QParams]) -> dict[str, QParams]:
    """Extend ``activations`` through :data:`PASS_THROUGH` ops (graph nodes are topo-sorted)."""
    act = dict(activations)
    for node in graph.node:
        if node.op_type in PASS_THROUGH and node.input and node.input[0] in act:
            for out in node.output[:1]:
                act.setdefault(out, act[node.input[0]])
    return act


def insert_qdq(
    model: onnx.ModelProto,
    activations: dict[str, QParams],
    weights: dict[str, QParams],
    recipe_name: str = "",
) -> onnx.ModelProto:
    """Copy of ``model`` with Q/DQ for ``activations`` (tensor name → qparams, propagated
    through pass-through ops) and integer ``weights`` (initializer name → qparams)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    act = propagate(g, activations)
    missing = [n for n in weights if n not in inits]
    if missing:
        raise ValueError(f"weights {missing} are not initializers of the exported graph")
    new_inits: list[onnx.TensorProto] = []
    drop: dict[str, QParams] = {}  # float initializer → qparams of its integer replacement
    for node in g.node:
        if node.op_type not in _WEIGHTED or len(node.input) < 2 or node.input[1] not in weights:
            continue
        wname = node.input[1]
        wqp = weights[wname]
        w = numpy_helper.to_array(inits[wname])  # (O, ...) float32
        if wname not in drop:
            new_inits.append(_int_tensor(f"{wname}_quantized", quantize(w, wqp), wqp))
            new_inits += _params(wname, wqp)
            drop[wname] = wqp
        if len(node.input) > 2 and node.input[2] in inits and node.input[0] in act:
            bname = node.input[2]
            bqp = bias_qparams(act[node.input[0]].scale, wqp)
            b = numpy_helper.to_array(inits[bname])  # (O,) float32
            new_inits.append(_int_tensor(f"{bname}_quantized", quantize(b, bqp), bqp))
            new_inits += _params(bname, bqp)
            drop[bname] = bqp

    # A quantized graph output keeps its name for the dequantized value (what callers read);
    # the float value its producer computes is renamed ``<name>_float``.
    outputs = {o.name for o in g.output}
    deq = {t: (t if t in outputs else f"{t}_dequantized") for t in act}
    src = {t: (f"{t}_float" if t in outputs else t) for t in act}

    def qdq(t: str) -> list[onnx.NodeProto]:
        new_inits.extend(_params(t, act[t]))
        q = helper.make_node("QuantizeLinear", [src[t], f"{t}_scale", f"{t}_zero_point"],
                             [f"{t}_quantized"], name=f"{t}_QuantizeLinear")
        return [q, _dq(t, act[t], f"{t}_quantized", deq[t])]

    # weight / bias DequantizeLinear first: they read only initializers
    nodes: list[onnx.NodeProto] = [_dq(n, qp, f"{n}_quantized") for n, qp in drop.items()]
    for inp in g.input:
        if inp.name in act:
            nodes += qdq(inp.name)
    renames = {**deq, **{n: f"{n}_dequantized" for n in drop}}
    for old in g.node:
        node = _rewire(old, renames)
        for i, o in enumerate(node.output):
            if o in src:
                node.output[i] = src[o]
        nodes.append(node)
        for t in old.output:
            if t in act:
                nodes += qdq(t)
    keep = [t for t in g.initializer if t.name not in drop]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    del g.node[:]
    g.node.extend(nodes)
    for op in out.opset_import:
        if op.domain in ("", "ai.onnx") and op.version < 21:
            op.version = 21
    if recipe_name:
        helper.set_model_props(out, {**{p.key: p.value for p in out.metadata_props},
                                     META_RECIPE: recipe_name})
    onnx.checker.check_model(out)
    return out


def _rewire(node: onnx.NodeProto, renames: dict[str, str]) -> onnx.NodeProto:
    """Point ``node``'s inputs at dequantized tensors (activations and weights/biases)."""
    new = onnx.NodeProto()
    new.CopyFrom(node)
    for i, name in enumerate(node.input):
        if name in renames:  # every consumer of a quantized initializer reads its DQ output
            new.input[i] = renames[name]
    return new
