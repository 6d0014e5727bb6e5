"""Read a float or QDQ ONNX model into a plain float graph plus quantization annotations.

A QDQ model (docs/architecture.md) is turned back into "the float graph + qparams":

* ``QuantizeLinear(t) → DequantizeLinear → t_dq``: consumers of ``t_dq`` read ``t``, and ``t``
  carries the activation qparams (:class:`ActQ`).
* ``DequantizeLinear(w_int_initializer) → w_dq``: ``w_dq`` becomes a quantized constant
  (:class:`QConst`) holding the integers, scales, zero points and axis.
* ``DequantizeLinear(int graph input)`` / ``QuantizeLinear → int graph output``: integer I/O;
  the float tensor takes the boundary's qparams and the I/O dtype is recorded.

The exporter then maps each float op to TFLite once, whatever the mode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.ingest_types import ActQ, Node, QConst
from edgequant.export.tflite.patterns import fold_casts, undo_row_dynamic
from edgequant.graph.contract import META_IO, META_RECIPE

log = logging.getLogger(__name__)

#: Recipe names (metadata ``edgequant.recipe``) → TFLite export mode.
RECIPE_MODES = {
    "fp32": "fp32",
    "fp16": "fp16",
    "w8_dynamic": "dynamic",
    "w8a8": "int8",
    "w8a16": "int16x8",
}


@dataclass
class Graph:
    """The float graph with everything the exporter needs to know about each tensor."""

    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    shapes: dict[str, tuple[int, ...]]
    consts: dict[str, np.ndarray]  # float (or int for shapes/axes) initializers
    qconsts: dict[str, QConst]
    act_q: dict[str, ActQ]
    io_dtype: dict[str, np.dtype] = field(default_factory=dict)  # integer I/O, by tensor
    recipe: str | None = None
    quantized: bool = False  # True when the model had Q/DQ nodes
    public_names: dict[str, str] = field(default_factory=dict)  # internal → ONNX I/O name

    def consumers(self, name: str) -> list[Node]:
        """Nodes reading ``name``."""
        return [n for n in self.nodes if name in n.inputs]

    def value(self, name: str) -> np.ndarray | None:
        """The float value of a constant (dequantized when quantized), or None."""
        if name in self.consts:
            return self.consts[name]
        if name in self.qconsts:
            return self.qconsts[name].dequantized()
        return None


def _fix_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fix a symbolic leading (batch) dim of every input to 1; other symbolic dims → error."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if k == 0:
                log.info("input %s: symbolic batch dim fixed to 1", inp.name)
                d.Clear()
                d.dim_value = 1
            else:
                raise UnsupportedOpError(
                    f"input {inp.name!r} has a dynamic dim {k} ({d.dim_param or '?'}): TFLite export "
                    "needs static shapes; only the leading batch dim is fixed (to 1)"
                )
    for out in model.graph.output:  # stale symbolic output shapes would clash with inference
        out.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    return model


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    missing = [o for n in g.node for o in n.output if o and o not in shapes]
    if missing:  # e.g. Pad with computed pads: ask onnxruntime, running zeros through
        shapes.update(_runtime_shapes(model, missing))
    return shapes


def _runtime_shapes(model: onnx.ModelProto, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of intermediate tensors from one onnxruntime run on zero inputs."""
    from edgequant.runtime.sessions import ort_session

    m = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    sess = ort_session(m)
    inits = {i.name for i in m.graph.initializer}
    feeds = {}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        feeds[inp.name] = np.zeros([d.dim_value for d in tt.shape.dim], dtype)
    outs = sess.run(names, feeds)
    log.info("shapes of %d tensors taken from an onnxruntime run", len(names))
    return {n: tuple(np.asarray(v).shape) for n, v in zip(names, outs, strict=True)}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _const(name: str, consts: dict[str, np.ndarray], node: Node) -> np.ndarray:
    if name not in consts:
        raise UnsupportedOpError(
            f"node {node.name!r} ({node.op_type}): input {name!r} must be a constant initializer"
        )
    return consts[name]


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    """The value of a Constant node, whichever attribute (value, value_ints, ...) holds it."""
    a = node.attribute[0]
    v = onnx.helper.get_attribute_value(a)
    if a.name == "value":
        return numpy_helper.to_array(v)
    dtype = {"value_int": np.int64, "value_ints": np.int64, "value_float": np.float32,
             "value_floats": np.float32}.get(a.name)
    if dtype is None:
        raise UnsupportedOpError(f"node {node.name!r}: Constant attribute {a.name!r} is not "
                                 "supported (use value, value_int(s) or value_float(s))")
    return np.asarray(v, dtype=dtype)


def read_graph(model: onnx.ModelProto) -> Graph:
    """Parse a float or QDQ ONNX model (opset ≥ 13) into a :class:`Graph`."""
    model = _fix_batch(model)
    shapes = _shapes(model)
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:  # Constant nodes are initializers too
        if n.op_type == "Constant":
            consts[n.output[0]] = _constant_value(n)
    meta = {p.key: p.value for p in model.metadata_props}
    io_meta = json.loads(meta.get(META_IO, "{}"))
    nodes = [
        Node(n.op_type, n.name or f"{n.op_type}_{k}", list(n.input), list(n.output), _attrs(n))
        for k, n in enumerate(g.node)
        if n.op_type != "Constant"
    ]
    alias: dict[str, str] = {}
    act_q: dict[str, ActQ] = {}
    qconsts: dict[str, QConst] = {}
    io_dtype: dict[str, np.dtype] = {}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 21)
    nodes = fold_casts(nodes, consts, shapes, opset)
    graph_inputs = [i.name for i in g.input if i.name not in consts]
    graph_outputs = [o.name for o in g.output]
    public = {o: o for o in graph_outputs}
    producer = {o: n for n in nodes for o in n.outputs}
    keep: list[Node] = []
    quantized = False
    for n in nodes:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            keep.append(n)
            continue
        quantized = True
        scale = np.asarray(_const(n.inputs[1], consts, n), dtype=np.float32)
        zp = (
            np.asarray(_const(n.inputs[2], consts, n))
            if len(n.inputs) > 2 and n.inputs[2]
            else np.zeros(scale.shape, np.uint8 if n.op_type == "QuantizeLinear" else np.int8)
        )
        if n.attrs.get("block_size"):
            raise UnsupportedOpError(f"node {n.name!r}: blocked (int4 group) quantization has "
                                     "no TFLite export; use per-channel weights")
        src = n.inputs[0]
        if n.op_type == "DequantizeLinear":
            if src in consts:  # quantized constant
                axis = n.attrs.get("axis", 1) if scale.ndim == 1 and scale.size > 1 else None
                if axis is not None:
                    axis %= consts[src].ndim
                qconsts[n.outputs[0]] = QConst(consts[src], scale, zp, axis)
            elif src in producer and producer[src].op_type == "QuantizeLinear":
                q = producer[src]
                alias[n.outputs[0]] = alias.get(q.inputs[0], q.inputs[0])
            elif src in graph_inputs:  # integer model input
                io_dtype[n.outputs[0]] = zp.dtype
                act_q[n.outputs[0]] = ActQ(float(scale), int(zp), zp.dtype)
                graph_inputs[graph_inputs.index(src)] = n.outputs[0]
                public[n.outputs[0]] = src
                shapes[n.outputs[0]] = shapes.get(src, ())
            else:
                raise UnsupportedOpError(f"node {n.name!r}: DequantizeLinear input {src!r} is "
                                         "neither a constant nor a QuantizeLinear output")
        else:  # QuantizeLinear
            if scale.size != 1:
                raise UnsupportedOpError(f"node {n.name!r}: per-channel activation quantization "
                                         "is not supported by TFLite (per tensor only)")
            x = alias.get(src, src)
            if src in consts:  # Q of a float constant: fold to a quantized constant
                from edgequant.primitives import quantize
                from edgequant.qparams import QParams
                from edgequant.spec import PerTensor, QType

                qt = QType(zp.dtype.itemsize * 8, zp.dtype.kind == "i")
                vals = quantize(consts[src], QParams(scale, zp, qt, PerTensor()))
                consts[n.outputs[0]] = vals
                continue
            act_q[x] = ActQ(float(scale), int(zp), zp.dtype)
            if n.outputs[0] in graph_outputs:  # integer model output
                io_dtype[x] = zp.dtype
                graph_outputs[graph_outputs.index(n.outputs[0])] = x
                public[x] = n.outputs[0]
    for n in keep:
        n.inputs = [alias.get(i, i) for i in n.inputs]
    for o in list(graph_outputs):
        if o in alias:
            public[alias[o]] = public.pop(o, o)
    graph_outputs = [alias.get(o, o) for o in graph_outputs]
    keep = undo_row_dynamic(keep, consts, qconsts, shapes, graph_outputs)
    for name, spec in io_meta.items():  # metadata wins when present (documents integer I/O)
        if name in io_dtype:
            io_dtype[name] = np.dtype(spec["dtype"])
    graph = Graph(keep, graph_inputs, graph_outputs, shapes, consts, qconsts, act_q, io_dtype,
                  meta.get(META_RECIPE), quantized, public)
    _fuse_activations(graph)
    return graph


#: Activations a TFLite op can fuse: ONNX (op, clip range) → TFLite ActivationFunctionType name.
FUSABLE_PRODUCERS = {"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul"}


def clip_activation(node: Node, consts: dict[str, np.ndarray]) -> str | None:
    """``RELU`` / ``RELU6`` / ``RELU_N1_TO_1`` for a Relu or Clip node, else None."""
    if node.op_type == "Relu":
        return "RELU"
    if node.op_type != "Clip":
        return None
    lo = node.attrs.get("min", -np.inf)
    hi = node.attrs.get("max", np.inf)
    if len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in consts:
            return None
        lo = float(consts[node.inputs[1]])
    if len(node.inputs) > 2 and node.inputs[2]:
        if node.inputs[2] not in consts:
            return None
        hi = float(consts[node.inputs[2]])
    return {(0.0, np.inf): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}.get(
        (float(lo), float(hi))
    )


def _fuse_activations(graph: Graph) -> None:
    """Fold Relu/Clip into the producing Conv/Gemm/MatMul/Add/Sub/Mul (``attrs['_act']``)."""
    producer = {o: n for n in graph.nodes for o in n.outputs}
    drop: set[int] = set()
    for n in graph.nodes:
        act = clip_activation(n, graph.consts)
        if act is None:
            continue
        p = producer.get(n.inputs[0])
        if p is None or p.op_type not in FUSABLE_PRODUCERS or "_act" in p.attrs:
            continue
        t = n.inputs[0]
        if len(graph.consumers(t)) != 1 or t in graph.outputs:
            continue
        p.attrs["_act"] = act
        p.outputs = [n.outputs[0]]
        drop.add(id(n))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]


__all__ = ["RECIPE_MODES", "ActQ", "Graph", "Node", "QConst", "clip_activation", "read_graph"]
