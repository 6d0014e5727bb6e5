"""Read a float or QDQ ONNX model for TFLite export: :func:`edgequant.graph.read_qdq.read_qdq`
(the float graph + per-tensor qparams) plus the TFLite-specific steps:

* the symbolic batch dim is fixed to 1, named dims to ``fixed_dims`` (any other dynamic dim is
  an error) and every tensor
  gets a static shape (ONNX shape inference, else one onnxruntime run on zeros);
* constant subgraphs are folded (``patterns.fold_casts``) and the ``w8_dynamic`` per-row
  subgraph becomes one MatMul / Gemm over an int8 weight (``patterns.undo_row_dynamic``);
* Relu / Clip are fused into their producer (TFLite fused activations).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

import numpy as np
import onnx
from onnx import helper

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.patterns import fold_casts, undo_row_dynamic
from edgequant.export.tflite.patterns_bias import fuse_matmul_bias
from edgequant.export.tflite.patterns_gelu import fuse_erf_gelu
from edgequant.graph.read_qdq import Node, QConst, QDQGraph, read_qdq

log = logging.getLogger(__name__)


@dataclass
class Graph(QDQGraph):
    """The float graph + qparams (:func:`read_qdq`) with the static shape of every tensor."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: element type of every non-float tensor (int64 ids, bool masks, int8 gathered rows …)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)

    def consumers(self, name: str) -> list[Node]:
        """Nodes reading ``name``."""
        return [n for n in self.nodes if name in n.inputs]


def _fix_dims(model: onnx.ModelProto, fixed_dims: dict[str, int] | None = None) -> onnx.ModelProto:
    """Give every input a static shape: a dim named in ``fixed_dims`` (``{"time": 12}``) takes
    that size; batch dims are fixed to 1 on any axis (a state ``(layers, batch, hidden)``):
    symbols containing "batch", else the leading dims' symbols, and unnamed leading dims; any
    other dynamic dim is an error naming the option that fixes it."""
    fixed = dict(fixed_dims or {})
    for k, v in fixed.items():
        if not isinstance(v, int | np.integer) or int(v) < 1:
            raise ValueError(f"fixed_dims[{k!r}] = {v!r}: sizes must be positive integers")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    symbols = {d.dim_param for i in inputs for d in i.type.tensor_type.shape.dim if d.dim_param}
    batch_names = {n for n in symbols if "batch" in n.lower()}
    if not batch_names:  # no dim says "batch": the leading dims' symbols are the batch
        batch_names = {d.dim_param for i in inputs for d in i.type.tensor_type.shape.dim[:1]
                       if d.dim_param}
    batch_names -= set(fixed)
    unknown = set(fixed) - {d.dim_param for i in inputs for d in i.type.tensor_type.shape.dim}
    if unknown:
        known = sorted({d.dim_param for i in inputs for d in i.type.tensor_type.shape.dim
                        if d.dim_param})
        raise ValueError(f"fixed_dims names {sorted(unknown)}: no input has such a dim "
                         f"(symbolic dims: {known or 'none'})")
    for inp in inputs:
        dims = inp.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            name = d.dim_param if d.HasField("dim_param") else ""
            if name in fixed:
                size = int(fixed[name])
            elif name in batch_names or (k == 0 and not name):
                size = 1
                log.info("input %s: symbolic batch dim %d (%s) fixed to 1", inp.name, k, name or "?")
            else:
                hint = name or f"{inp.name}_dim{k}"
                raise UnsupportedOpError(
                    f"input {inp.name!r} has a dynamic dim {k} ({name or '?'}): TFLite export "
                    "needs static shapes; only the batch dim is fixed (to 1). Fix it with "
                    f"fixed_dims={{{hint!r}: N}} (CLI: --fix-dim {hint}=N)"
                    + ("" if name else " after naming the dim in the ONNX model"))
            d.Clear()
            d.dim_value = size
    for out in model.graph.output:  # stale symbolic output shapes would clash with inference
        out.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    return model


def _shapes(model: onnx.ModelProto,
            dtypes: dict[str, np.dtype] | None = None) -> dict[str, tuple[int, ...]]:
    """Static shape of every tensor; ``dtypes`` (when given) receives the element type of
    every tensor whose type is not float."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        tt = vi.type.tensor_type
        if dtypes is not None and tt.elem_type and tt.elem_type not in _FLOAT_TYPES:
            dtypes[vi.name] = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    missing = [o for n in g.node for o in n.output if o and o not in shapes]
    if missing:  # e.g. Pad with computed pads: ask onnxruntime, running zeros through
        shapes.update(_runtime_shapes(model, missing))
    return shapes


#: ONNX element types that are real numbers (float32 inside the exported graph).
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                onnx.TensorProto.BFLOAT16}


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


def read_graph(model: onnx.ModelProto, fixed_dims: dict[str, int] | None = None) -> Graph:
    """Parse a float or QDQ ONNX model (opset ≥ 13) into a :class:`Graph` for TFLite export;
    ``fixed_dims`` sizes named dynamic dims (:func:`_fix_dims`)."""
    model = _fix_dims(model, fixed_dims)
    dtypes: dict[str, np.dtype] = {}
    shapes = _shapes(model, dtypes)
    qg = read_qdq(model)
    graph = Graph(**{f.name: getattr(qg, f.name) for f in fields(QDQGraph)}, shapes=shapes,
                  dtypes=dtypes)
    for name in graph.inputs:  # integer inputs: the DQ output has the input's shape
        if name not in shapes and graph.public_names.get(name) in shapes:
            shapes[name] = shapes[graph.public_names[name]]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 21)
    graph.nodes = fold_casts(graph.nodes, graph.consts, shapes, opset)
    graph.nodes = undo_row_dynamic(graph.nodes, graph.consts, graph.qconsts, shapes,
                                   graph.outputs)
    scalars = {k: q.dequantized() for k, q in graph.qconsts.items() if q.values.size == 1}
    graph.nodes = fuse_erf_gelu(graph.nodes, {**graph.consts, **scalars}, graph.outputs)
    fuse_matmul_bias(graph)
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


__all__ = ["Graph", "Node", "QConst", "clip_activation", "read_graph"]
