"""Read-only index of a QDQ ONNX graph for lowering: constants, producers, consumers, qparams.

Lowering looks at one float op at a time and asks: is each float input the output of a
``DequantizeLinear`` (and with which integer tensor and qparams)? Is the output consumed
only by a ``QuantizeLinear`` (possibly through a fused Relu / Clip)? :class:`QdqIndex`
answers those questions; :mod:`lower_ops` decides what to emit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from edgequant.graph.contract import FUSED_ACTIVATIONS

#: Integer activation types onnxruntime has QLinear* kernels for (int16 has none).
KERNEL_ACTIVATION_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))

#: Activations that can ride on a producer's requantization as an integer clamp.
FUSABLE_ACTIVATIONS = FUSED_ACTIVATIONS


@dataclass(frozen=True)
class QTensor:
    """An integer tensor and the qparams that map it to/from float.

    ``name`` is the integer tensor (a DQ's input or a Q's output); ``scale`` / ``zero_point``
    are names of constants in the graph (created by the index when a Q/DQ omitted the zero
    point); ``scale_value`` / ``zp_value`` hold their values; ``axis`` is the per-channel axis
    (None for per tensor).
    """

    name: str
    scale: str
    zero_point: str
    scale_value: np.ndarray
    zp_value: np.ndarray
    axis: int | None
    dtype: np.dtype

    @property
    def per_tensor(self) -> bool:
        """True when scale and zero point are single values."""
        return self.scale_value.size == 1 and self.zp_value.size == 1

    @property
    def qmin(self) -> int:
        """Smallest value of the integer type."""
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        """Largest value of the integer type."""
        return int(np.iinfo(self.dtype).max)

    def same_qparams(self, other: QTensor) -> bool:
        """True when both tensors map integers to the same floats (same dtype, scale, zp)."""
        return (
            self.dtype == other.dtype
            and self.per_tensor
            and other.per_tensor
            and np.array_equal(self.scale_value.ravel(), other.scale_value.ravel())
            and np.array_equal(self.zp_value.ravel().astype(np.int64),
                               other.zp_value.ravel().astype(np.int64))
        )


@dataclass(frozen=True)
class OutputQ:
    """Where a float op's output is quantized: the Q node, the fused activation, its bounds."""

    q_node: onnx.NodeProto
    out: QTensor
    activation: onnx.NodeProto | None
    lo: float  # float lower bound of the fused activation (-inf when none)
    hi: float  # float upper bound of the fused activation (+inf when none)

    @property
    def consumed(self) -> list[onnx.NodeProto]:
        """Nodes the lowered op replaces besides the anchor itself."""
        return [n for n in (self.activation, self.q_node) if n is not None]


@dataclass
class QdqIndex:
    """Lookup tables over a QDQ graph; also collects new initializers for the rewrite."""

    model: onnx.ModelProto
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    graph_outputs: set[str] = field(default_factory=set)
    elem_types: dict[str, int] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    new_initializers: list[onnx.TensorProto] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, model: onnx.ModelProto) -> QdqIndex:
        """Index ``model`` (not modified)."""
        g = model.graph
        idx = cls(model=model)
        for init in g.initializer:
            idx.consts[init.name] = numpy_helper.to_array(init)
        for node in g.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = _constant_value(node)
                if value is not None:
                    idx.consts[node.output[0]] = value
            for name in node.output:
                idx.producer[name] = node
            for name in node.input:
                if name:
                    idx.consumers.setdefault(name, []).append(node)
        idx.graph_outputs = {o.name for o in g.output}
        for vi in [*g.input, *g.output, *g.value_info]:
            if vi.type.HasField("tensor_type"):
                idx.elem_types[vi.name] = vi.type.tensor_type.elem_type
                if vi.type.tensor_type.HasField("shape"):
                    idx.ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
        idx._names = {n for node in g.node for n in [*node.input, *node.output, node.name]}
        idx._names |= set(idx.consts) | {vi.name for vi in g.input}
        return idx

    # -- naming and new constants -------------------------------------------------------
    def unique(self, hint: str) -> str:
        """A tensor / node name not used anywhere in the graph yet."""
        name, i = hint, 1
        while name in self._names:
            name, i = f"{hint}_{i}", i + 1
        self._names.add(name)
        return name

    def add_const(self, hint: str, value: np.ndarray) -> str:
        """Add an initializer holding ``value`` and return its (unique) name."""
        name = self.unique(hint)
        self.new_initializers.append(numpy_helper.from_array(np.asarray(value), name))
        self.consts[name] = np.asarray(value)
        return name

    # -- questions lowering asks ---------------------------------------------------------
    def is_op(self, node: onnx.NodeProto | None, op_type: str) -> bool:
        """True for a default-domain node of ``op_type``."""
        return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")

    def dq_input(self, name: str) -> QTensor | str:
        """The integer tensor behind ``name`` when a DequantizeLinear produces it, else why not."""
        dq = self.producer.get(name)
        if not self.is_op(dq, "DequantizeLinear"):
            what = f"{dq.op_type} '{dq.name}'" if dq is not None else "a graph input/initializer"
            return f"input '{name}' comes from {what}, not DequantizeLinear"
        return self._qtensor(dq, dq.input[0])

    def output_q(self, node: onnx.NodeProto) -> OutputQ | str:
        """How ``node``'s single output is quantized, or a reason it is not (for the report).

        Accepts ``node → Q`` and ``node → Relu|Clip → Q`` where every intermediate float
        tensor has exactly one consumer and is not a graph output.
        """
        if len(node.output) != 1:
            return f"has {len(node.output)} outputs; lowering handles single-output ops"
        act: onnx.NodeProto | None = None
        lo, hi = -np.inf, np.inf
        tensor = node.output[0]
        nxt = self._sole_consumer(tensor)
        if isinstance(nxt, str):
            return nxt
        if nxt.op_type in FUSABLE_ACTIVATIONS and nxt.domain in ("", "ai.onnx"):
            bounds = self.activation_bounds(nxt)
            if isinstance(bounds, str):
                return bounds
            act, (lo, hi) = nxt, bounds
            nxt = self._sole_consumer(act.output[0])
            if isinstance(nxt, str):
                return nxt
        if not self.is_op(nxt, "QuantizeLinear"):
            return f"output feeds {nxt.op_type} '{nxt.name}', not QuantizeLinear"
        out = self._qtensor(nxt, nxt.output[0])
        if isinstance(out, str):
            return out
        return OutputQ(q_node=nxt, out=out, activation=act, lo=float(lo), hi=float(hi))

    def activation_bounds(self, act: onnx.NodeProto) -> tuple[float, float] | str:
        """Float clamp range of a Relu or Clip node, or why it cannot be read statically."""
        if act.op_type == "Relu":
            return 0.0, float("inf")
        bounds = []
        for i, default in ((1, -np.inf), (2, np.inf)):
            name = act.input[i] if len(act.input) > i else ""
            if not name:
                bounds.append(float(default))
            elif name in self.consts:
                bounds.append(float(self.consts[name]))
            else:
                return f"Clip '{act.name}' bound '{name}' is not a constant"
        return bounds[0], bounds[1]

    def _sole_consumer(self, tensor: str) -> onnx.NodeProto | str:
        users = self.consumers.get(tensor, [])
        if tensor in self.graph_outputs:
            return f"float tensor '{tensor}' is a graph output"
        if len(users) != 1:
            return f"float tensor '{tensor}' has {len(users)} consumers (need exactly one Q)"
        return users[0]

    def _qtensor(self, node: onnx.NodeProto, int_name: str) -> QTensor | str:
        """QTensor for a Q or DQ node; ``int_name`` is its integer side."""
        if any(a.name == "block_size" and a.i for a in node.attribute):
            return f"{node.op_type} '{node.name}' is blocked (block_size); no QLinear kernel"
        scale_name = node.input[1]
        if scale_name not in self.consts:
            return f"{node.op_type} '{node.name}' scale '{scale_name}' is not a constant"
        zp_name = node.input[2] if len(node.input) > 2 else ""
        if zp_name and zp_name not in self.consts:
            return f"{node.op_type} '{node.name}' zero point '{zp_name}' is not a constant"
        scale = np.asarray(self.consts[scale_name], dtype=np.float32)
        if zp_name:
            zp = self.consts[zp_name]
        else:
            dtype = self._int_dtype(node, int_name)
            if dtype is None:
                return f"{node.op_type} '{node.name}' has no zero point and an unknown type"
            zp = np.zeros(scale.shape, dtype=dtype)
            zp_name = self.add_const(f"{int_name}_zero_point", zp)
        axis = None
        if scale.size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return QTensor(int_name, scale_name, zp_name, scale, np.asarray(zp), axis, zp.dtype)

    def _int_dtype(self, node: onnx.NodeProto, int_name: str) -> np.dtype | None:
        if node.op_type == "QuantizeLinear":
            out_dt = next((a.i for a in node.attribute if a.name == "output_dtype"), 0)
            return onnx.helper.tensor_dtype_to_np_dtype(out_dt or onnx.TensorProto.UINT8)
        if int_name in self.consts:
            return self.consts[int_name].dtype
        et = self.elem_types.get(int_name)
        return onnx.helper.tensor_dtype_to_np_dtype(et) if et else None


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    """Value of a Constant node with a ``value`` / ``value_float(s)`` / ``value_int(s)``."""
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.asarray(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.asarray(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.asarray(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.asarray(list(a.ints), dtype=np.int64)
    return None
