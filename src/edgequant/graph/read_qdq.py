"""Read a QDQ ONNX model back into "the float graph + per-tensor qparams".

The quantized QDQ graph is the contract between stages (docs/architecture.md): every reader
after insertion (exporters, ``inspect``) learns each tensor's precision here, from the Q/DQ
nodes, never from a recipe name. :func:`read_qdq` returns a :class:`QDQGraph`:

* ``QuantizeLinear(t) → DequantizeLinear → t_dq``: consumers of ``t_dq`` read ``t``, and ``t``
  carries the activation qparams (``act_q[t]``, a per-tensor :class:`QParams`).
* A second Q/DQ pair with *other* qparams on an already quantized tensor (a precision seam,
  e.g. int8 → int16) becomes an ``Identity`` node from ``t`` to the pair's output, which
  carries the new qparams: the requantization is explicit in the float graph.
* ``DequantizeLinear(integer constant) → w_dq``: ``w_dq`` is a quantized constant
  (:class:`QConst`: integers + :class:`QParams`, per tensor / per channel / blocked, int4
  values unpacked into int8).
* ``QuantizeLinear(float constant)``: folded to its integers (a constant read through DQ).
* ``Cast(integer constant) → Mul(scale) [→ Reshape]`` (the weight-only layout of
  ``graph/passes/weight_only.py``): a quantized constant too, per tensor / per channel, or
  blocked when the block is its own axis (symmetric: zero point 0).
* ``Cast(float16 constant → float)``: a float constant stored as float16 (``half``).
* ``DequantizeLinear(integer graph input)`` / ``QuantizeLinear → graph output``: integer model
  I/O; the float tensor takes the boundary's qparams and ``io_dtype`` records the type
  (``edgequant.io`` metadata, when present, wins).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.errors import UnsupportedOpError
from edgequant.graph.contract import META_IO
from edgequant.primitives import dequantize, quantize
from edgequant.qparams import QParams
from edgequant.spec import Granularity, PerChannel, PerGroup, PerTensor, QType

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class Node:
    """One ONNX node of the float graph (Q/DQ removed, inputs renamed to float tensors)."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict


@dataclass(frozen=True)
class QConst:
    """A quantized constant (weight, bias, constant operand) read through DequantizeLinear."""

    values: np.ndarray  # integers, ONNX layout (int4 unpacked into int8 / uint8)
    qparams: QParams

    @property
    def scale(self) -> np.ndarray:
        """float32 scale (0-d, (C,), or blocked full-rank)."""
        return self.qparams.scale

    @property
    def zero_point(self) -> np.ndarray:
        """Zero point, same shape as ``scale``."""
        return self.qparams.zero_point

    @property
    def axis(self) -> int | None:
        """Channel (or blocked) axis; None for per tensor."""
        g = self.qparams.granularity
        return None if isinstance(g, PerTensor) else g.axis % self.values.ndim

    @property
    def block_size(self) -> int | None:
        """Block length along ``axis`` for blocked (int4 group) weights, else None."""
        g = self.qparams.granularity
        return g.size if isinstance(g, PerGroup) else None

    def dequantized(self) -> np.ndarray:
        """The float32 value the ONNX model computes with (ONNX DequantizeLinear semantics)."""
        return dequantize(self.values, self.qparams)


@dataclass
class QDQGraph:
    """The float graph of a (possibly) QDQ model and the precision of each tensor."""

    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    consts: dict[str, np.ndarray]  # float (or int for shapes/axes) constants
    qconsts: dict[str, QConst] = field(default_factory=dict)
    act_q: dict[str, QParams] = field(default_factory=dict)  # per-tensor activation qparams
    half: set[str] = field(default_factory=set)  # float constants stored as float16
    io_dtype: dict[str, np.dtype] = field(default_factory=dict)  # integer I/O, by tensor
    public_names: dict[str, str] = field(default_factory=dict)  # internal → ONNX I/O name
    quantized: bool = False  # True when the model had Q/DQ nodes
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def qparams(self) -> dict[str, QParams]:
        """Every quantized tensor (activations and constants) → its :class:`QParams`."""
        return {**self.act_q, **{k: c.qparams for k, c in self.qconsts.items()}}

    def value(self, name: str) -> np.ndarray | None:
        """The float value of a constant (dequantized when quantized), or None."""
        if name in self.consts:
            return self.consts[name]
        if name in self.qconsts:
            return self.qconsts[name].dequantized()
        return None


def qtype_of(dtype: np.dtype | int) -> QType:
    """QType of a zero-point numpy dtype or ONNX elem type (int4 … int16, int32 for bias)."""
    if isinstance(dtype, int):
        if dtype in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
            return QType(4, dtype == onnx.TensorProto.INT4)
        dtype = helper.tensor_dtype_to_np_dtype(dtype)
    dtype = np.dtype(dtype)
    if dtype.name in ("int4", "uint4"):
        return QType(4, dtype.name == "int4")
    if dtype == np.int32:  # bias
        return QType(32, True)
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        raise UnsupportedOpError(f"quantized type {dtype} is not allowed: use int4, uint4, "
                                 "int8, uint8, int16, uint16 or int32 (bias)")
    return QType(dtype.itemsize * 8, dtype.kind == "i")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    """The value of a Constant node, whichever attribute (value, value_ints, ...) holds it."""
    a = node.attribute[0]
    v = helper.get_attribute_value(a)
    if a.name == "value":
        return numpy_helper.to_array(v)
    dtype = {"value_int": np.int64, "value_ints": np.int64, "value_float": np.float32,
             "value_floats": np.float32}.get(a.name)
    if dtype is None:
        raise UnsupportedOpError(f"node {node.name!r}: Constant attribute {a.name!r} is not "
                                 "supported (use value, value_int(s) or value_float(s))")
    return np.asarray(v, dtype=dtype)


def _const(name: str, consts: dict[str, np.ndarray], node: Node) -> np.ndarray:
    if name not in consts:
        raise UnsupportedOpError(
            f"node {node.name!r} ({node.op_type}): input {name!r} must be a constant initializer"
        )
    return consts[name]


def _granularity(n: Node, scale: np.ndarray, rank: int) -> Granularity:
    """ONNX Q/DQ attributes → granularity (``rank`` of the quantized tensor)."""
    block = int(n.attrs.get("block_size", 0) or 0)
    axis = int(n.attrs.get("axis", 1)) % max(rank, 1)
    if block:
        return PerGroup(axis, block)
    if scale.ndim == 1 and scale.size > 1:
        return PerChannel(axis)
    if scale.size == 1:
        return PerTensor()
    raise UnsupportedOpError(f"node {n.name!r}: scale of shape {scale.shape} without block_size")


def _node_qparams(n: Node, consts: dict[str, np.ndarray], qtype: QType, rank: int) -> QParams:
    scale = np.asarray(_const(n.inputs[1], consts, n), dtype=np.float32)
    if len(n.inputs) > 2 and n.inputs[2]:
        zp = np.asarray(_const(n.inputs[2], consts, n)).astype(qtype.numpy_dtype)
    else:
        zp = np.zeros(scale.shape, qtype.numpy_dtype)
    gran = _granularity(n, scale, rank)
    if isinstance(gran, PerTensor):
        scale, zp = scale.reshape(()), zp.reshape(())
    return QParams(scale, zp, qtype, gran)


def _q_type(n: Node, consts: dict, elem_types: dict[str, int]) -> QType:
    """Integer type of a QuantizeLinear's output (zero point, output_dtype, else uint8)."""
    if len(n.inputs) > 2 and n.inputs[2]:
        return qtype_of(elem_types.get(n.inputs[2]) or consts[n.inputs[2]].dtype)
    if n.attrs.get("output_dtype"):
        return qtype_of(int(n.attrs["output_dtype"]))
    return QType(8, False)


def _read_consts(g: onnx.GraphProto) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    consts: dict[str, np.ndarray] = {}
    elem: dict[str, int] = {}
    for i in g.initializer:
        consts[i.name] = numpy_helper.to_array(i)
        elem[i.name] = i.data_type
    for n in g.node:  # Constant nodes are initializers too
        if n.op_type == "Constant":
            consts[n.output[0]] = _constant_value(n)
            if n.attribute[0].name == "value":
                elem[n.output[0]] = n.attribute[0].t.data_type
    for k, v in consts.items():  # int4 / uint4 arrays (ml_dtypes) → unpacked int8 / uint8
        if v.dtype.name in ("int4", "uint4"):
            consts[k] = v.astype(np.int8 if v.dtype.name == "int4" else np.uint8)
    return consts, elem


def read_qdq(model: onnx.ModelProto) -> QDQGraph:
    """Parse a float or QDQ ONNX model (opset ≥ 13) into a :class:`QDQGraph` (plain data)."""
    g = model.graph
    consts, elem = _read_consts(g)
    elem.update({i.name: i.type.tensor_type.elem_type for i in g.input if i.name not in consts})
    meta = {p.key: p.value for p in model.metadata_props}
    nodes = [Node(n.op_type, n.name or f"{n.op_type}_{k}", list(n.input), list(n.output),
                  _attrs(n)) for k, n in enumerate(g.node) if n.op_type != "Constant"]
    out = QDQGraph([], [i.name for i in g.input if i.name not in consts],
                   [o.name for o in g.output], consts, metadata=meta)
    out.public_names = {o: o for o in out.outputs}
    alias: dict[str, str] = {}
    producer = {o: n for n in nodes for o in n.outputs}
    drop = _read_cast_mul(nodes, out, elem)
    for n in nodes:
        if id(n) in drop:
            continue
        if n.op_type == "Cast" and n.inputs[0] in consts and elem.get(n.inputs[0]) == \
                onnx.TensorProto.FLOAT16 and n.attrs.get("to") == onnx.TensorProto.FLOAT:
            consts[n.outputs[0]] = consts[n.inputs[0]].astype(np.float32)
            out.half.add(n.outputs[0])
        elif n.op_type == "DequantizeLinear":
            out.quantized = True
            _dequantize_linear(n, out, alias, producer, elem)
        elif n.op_type == "QuantizeLinear" and n.inputs[1] not in consts:
            out.nodes.append(n)  # run-time scale (w8_dynamic's per-row quantization): an op
        elif n.op_type == "QuantizeLinear":
            out.quantized = True
            _quantize_linear(n, out, alias, elem)
        else:
            out.nodes.append(n)
    for n in out.nodes:
        n.inputs = [alias.get(i, i) for i in n.inputs]
    for o in list(out.outputs):
        if o in alias:
            out.public_names[alias[o]] = out.public_names.pop(o, o)
    out.outputs = [alias.get(o, o) for o in out.outputs]
    for name, spec in json.loads(meta.get(META_IO, "{}")).items():  # metadata wins
        if name in out.io_dtype:
            out.io_dtype[name] = np.dtype(spec["dtype"])
    return out


def _sole(nodes: list[Node], name: str, op: str) -> Node | None:
    users = [n for n in nodes if name in n.inputs]
    return users[0] if len(users) == 1 and users[0].op_type == op else None


def _read_cast_mul(nodes: list[Node], out: QDQGraph, elem: dict[str, int]) -> set[int]:
    """Register each ``Cast(int const) → Mul(scale const) [→ Reshape(const)]`` chain as a
    :class:`QConst`; returns the ids of the nodes it replaces."""
    consts, drop = out.consts, set()
    for cast in nodes:
        src = cast.inputs[0] if cast.op_type == "Cast" else None
        if src not in consts or consts[src].dtype.kind not in "iu" \
                or cast.attrs.get("to") != onnx.TensorProto.FLOAT:
            continue
        mul = _sole(nodes, cast.outputs[0], "Mul")
        scale_name = mul and next((i for i in mul.inputs if i != cast.outputs[0]), None)
        if scale_name not in consts or consts[scale_name].dtype != np.float32:
            continue
        reshape = _sole(nodes, mul.outputs[0], "Reshape")
        if reshape is not None and reshape.inputs[1] not in consts:
            reshape = None
        shape = tuple(int(d) for d in consts[reshape.inputs[1]]) if reshape else None
        qc = _cast_mul_qconst(consts[src], consts[scale_name], shape, qtype_of(elem[src]))
        if qc is None:
            continue
        last = reshape or mul
        out.qconsts[last.outputs[0]] = qc
        drop |= {id(cast), id(mul), id(last)}
    return drop


def _cast_mul_qconst(q: np.ndarray, scale: np.ndarray, shape: tuple[int, ...] | None,
                     qt: QType) -> QConst | None:
    """The QConst of ``Cast(q) · scale`` [reshaped to ``shape``], or None when the scale
    layout is neither per tensor, per channel nor blocked."""
    zeros = np.zeros  # symmetric storage: zero point 0
    if shape is None or tuple(shape) == q.shape:
        if scale.size == 1:
            return QConst(q, QParams(scale.reshape(()), zeros((), qt.numpy_dtype), qt,
                                     PerTensor()))
        axes = [k for k, d in enumerate(scale.shape) if d > 1]
        if len(axes) != 1 or scale.ndim != q.ndim or scale.shape[axes[0]] != q.shape[axes[0]]:
            return None
        s = scale.reshape(-1)  # (C,)
        return QConst(q, QParams(s, zeros(s.shape, qt.numpy_dtype), qt, PerChannel(axes[0])))
    for ax in range(len(shape)):  # q: (..., blocks, size, ...) → shape (..., blocks·size, ...)
        blocks, size = q.shape[ax], q.shape[ax + 1] if ax + 1 < q.ndim else 0
        split = (*shape[:ax], blocks, size, *shape[ax + 1:])
        if q.shape == split and blocks * size == shape[ax] and scale.ndim == q.ndim \
                and scale.shape[ax + 1] == 1:
            full = np.broadcast_to(scale, (*split[:ax + 1], 1, *split[ax + 2:]))
            s = np.ascontiguousarray(full.reshape((*shape[:ax], blocks, *shape[ax + 1:])))
            qp = QParams(s, zeros(s.shape, qt.numpy_dtype), qt, PerGroup(ax, size))
            return QConst(q.reshape(shape), qp)
    return None


def _dequantize_linear(n: Node, out: QDQGraph, alias: dict[str, str],
                       producer: dict[str, Node], elem: dict[str, int]) -> None:
    src, consts = n.inputs[0], out.consts
    if src in consts:  # quantized constant
        qt = qtype_of(elem.get(src) or consts[src].dtype)
        qp = _node_qparams(n, consts, qt, consts[src].ndim)
        out.qconsts[n.outputs[0]] = QConst(consts[src], qp)
        return
    if src in producer and producer[src].op_type == "QuantizeLinear":
        q = producer[src]
        x = alias.get(q.inputs[0], q.inputs[0])
        want = q.attrs.get("_qparams")
        if x in out.act_q and want is not None and not want == out.act_q[x]:
            # a second Q/DQ with other qparams: an explicit requantization (precision seam)
            out.nodes.append(Node("Identity", f"{n.name}_requant", [x], [n.outputs[0]], {}))
            out.act_q[n.outputs[0]] = want
            return
        if want is not None:
            out.act_q.setdefault(x, want)
        alias[n.outputs[0]] = x
        return
    if src in out.inputs:  # integer model input
        qt = qtype_of(elem[src])
        qp = _node_qparams(n, consts, qt, 0)
        d = n.outputs[0]
        out.io_dtype[d] = qt.numpy_dtype
        out.act_q[d] = qp
        out.inputs[out.inputs.index(src)] = d
        out.public_names[d] = src
        return
    raise UnsupportedOpError(f"node {n.name!r}: DequantizeLinear input {src!r} is neither a "
                             "constant nor a QuantizeLinear output")


def _quantize_linear(n: Node, out: QDQGraph, alias: dict[str, str], elem: dict[str, int]) -> None:
    src, consts = n.inputs[0], out.consts
    qt = _q_type(n, consts, elem)
    if src in consts:  # Q of a float constant: fold to its integers (a DQ reads them)
        qp = _node_qparams(n, consts, qt, consts[src].ndim)
        consts[n.outputs[0]] = quantize(consts[src], qp)
        elem[n.outputs[0]] = qt.onnx_dtype
        return
    qp = _node_qparams(n, consts, qt, 0)
    if not isinstance(qp.granularity, PerTensor):
        raise UnsupportedOpError(f"node {n.name!r}: per-channel / blocked activation "
                                 "quantization is not supported (per tensor only)")
    n.attrs["_qparams"] = qp  # read by the DequantizeLinear that follows
    x = alias.get(src, src)
    if n.outputs[0] in out.outputs:  # integer model output
        out.act_q.setdefault(x, qp)
        out.io_dtype[x] = qt.numpy_dtype
        out.public_names[x] = n.outputs[0]
        out.outputs[out.outputs.index(n.outputs[0])] = x
    elif x not in out.act_q and x not in out.consts:
        out.act_q[x] = qp


__all__ = ["QDQ_OPS", "Node", "QConst", "QDQGraph", "qtype_of", "read_qdq"]
