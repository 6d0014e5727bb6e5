"""Read an ONNX model's ops, I/O, parameters and quantization tables (for ``inspect_model``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgequant.graph.io import load_model

#: Element bytes of sub-byte types (stored packed two per byte).
_PACKED_BYTES = {onnx.TensorProto.INT4: 0.5, onnx.TensorProto.UINT4: 0.5}

#: QLinear* ops: input indices of each (tensor, scale, zero_point) triple, and the output
#: pair (scale, zero_point) describing output 0. Layouts from the ONNX / com.microsoft specs.
_QLINEAR = {
    "QLinearConv": ([(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearMatMul": ([(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearAdd": ([(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearMul": ([(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QGemm": ([(0, 1, 2), (3, 4, 5)], (7, 8)),  # input 6 is the int32 bias C
    "QLinearAveragePool": ([(0, 1, 2)], (3, 4)),
    "QLinearGlobalAveragePool": ([(0, 1, 2)], (3, 4)),
    "QLinearLeakyRelu": ([(0, 1, 2)], (3, 4)),
    "QLinearSigmoid": ([(0, 1, 2)], (3, 4)),
    "QLinearSoftmax": ([(0, 1, 2)], (3, 4)),
    "QLinearConcat": ([], (0, 1)),  # input triples from index 2 on, see _qlinear
}
#: *Integer ops: (tensor input index, zero-point input index, scale input index or None).
_INTEGER = {
    "ConvInteger": [(0, 2, None), (1, 3, None)],
    "MatMulInteger": [(0, 2, None), (1, 3, None)],
    "MatMulIntegerToFloat": [(0, 4, 2), (1, 5, 3)],
    "DynamicQuantizeMatMul": [(1, 3, 2)],
}


def _dtype_name(elem_type: int) -> str:
    """numpy-style name (``float32``, ``uint8``, ``int4``), the same names .tflite reports."""
    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        try:
            return onnx.helper.tensor_dtype_to_string(elem_type).removeprefix("TensorProto.").lower()
        except KeyError:  # not an ONNX element type at all (a corrupted file)
            return f"unknown type {elem_type}"


def _tensor_info(v: onnx.ValueInfoProto) -> dict[str, Any]:
    t = v.type.tensor_type
    shape = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
    ]
    return {"name": v.name, "dtype": _dtype_name(t.elem_type), "shape": shape}


def _param_bytes(t: onnx.TensorProto) -> int:
    n = int(np.prod(t.dims)) if len(t.dims) else 1
    if t.data_type in _PACKED_BYTES:
        return int(np.ceil(n * _PACKED_BYTES[t.data_type]))
    return n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


class _Collector:
    """Accumulates quantized tensors by name (a tensor read by a DQ and written by a Q, or
    shared by QLinear ops, is listed once with every op that touches it)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.dtypes: dict[str, int] = {t.name: t.data_type for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.const[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
                self.dtypes[n.output[0]] = n.attribute[0].t.data_type
        for v in [*g.input, *g.output, *g.value_info]:
            self.dtypes.setdefault(v.name, v.type.tensor_type.elem_type)
        self.initializers = {t.name for t in g.initializer}
        self.found: dict[str, dict[str, Any]] = {}

    def value(self, name: str | None) -> np.ndarray | None:
        return self.const.get(name) if name else None

    def add(self, name, dtype, scale, zp, axis, block, op) -> None:
        if name in self.found:
            self.found[name]["ops"].append(op)
            return
        self.found[name] = {
            "name": name,
            "dtype": dtype,
            "scale": None if scale is None else np.asarray(scale, dtype=np.float32),
            "zero_point": None if zp is None else np.asarray(zp),
            "axis": axis,
            "block_size": block,
            "constant": name in self.initializers,
            "ops": [op],
        }

    def dtype_of(self, name: str, zp: np.ndarray | None, default: str = "uint8") -> str:
        if zp is not None:
            return str(zp.dtype)
        if self.dtypes.get(name):
            return _dtype_name(self.dtypes[name])
        return default


def _input(node: onnx.NodeProto, i: int) -> str | None:
    return node.input[i] if i < len(node.input) and node.input[i] else None


def _qdq(c: _Collector, node: onnx.NodeProto) -> None:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    scale, zp = c.value(_input(node, 1)), c.value(_input(node, 2))
    is_q = node.op_type == "QuantizeLinear"
    name = node.output[0] if is_q else node.input[0]
    default = "uint8"
    if is_q and attrs.get("output_dtype"):
        default = _dtype_name(attrs["output_dtype"])
    block = int(attrs.get("block_size", 0)) or None
    per_tensor = scale is not None and scale.ndim == 0 and block is None
    axis = None if per_tensor else int(attrs.get("axis", 1))
    c.add(name, c.dtype_of(name, zp, default), scale, zp, axis, block, node.op_type)


def _qlinear(c: _Collector, node: onnx.NodeProto) -> None:
    triples, (os_, oz) = _QLINEAR[node.op_type]
    if node.op_type == "QLinearConcat":  # (Y_scale, Y_zp, then X_i, X_i_scale, X_i_zp ...)
        triples = [(i, i + 1, i + 2) for i in range(2, len(node.input), 3)]
    for ti, si, zi in [*triples, (None, os_, oz)]:
        name = node.output[0] if ti is None else _input(node, ti)
        if not name or _input(node, si) is None:  # e.g. QGemm with a float output
            continue
        scale, zp = c.value(_input(node, si)), c.value(_input(node, zi))
        axis = None
        if scale is not None and scale.size > 1:
            # weights per output channel: Conv (O, I, kh, kw) axis 0; MatMul B (K, N) its
            # last axis; QGemm B (N, K) axis 0 when transB=1
            w = c.value(name)
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            if node.op_type == "QLinearConv" or (node.op_type == "QGemm" and trans_b):
                axis = 0
            else:
                axis = w.ndim - 1 if w is not None else -1
        c.add(name, c.dtype_of(name, zp), scale, zp, axis, None, node.op_type)


def _integer(c: _Collector, node: onnx.NodeProto) -> None:
    for ti, zi, si in _INTEGER[node.op_type]:
        name = _input(node, ti)
        if not name:
            continue
        zp = c.value(_input(node, zi))
        scale = c.value(_input(node, si)) if si is not None else None
        axis = None
        if (zp is not None and zp.size > 1) or (scale is not None and scale.size > 1):
            axis = 0 if node.op_type == "ConvInteger" else -1
        c.add(name, c.dtype_of(name, zp), scale, zp, axis, None, node.op_type)


def inspect_onnx(path: str | Path) -> dict[str, Any]:
    """Parts of a ``ModelSummary`` for an ONNX file (plain dicts)."""
    model = load_model(path)
    g = model.graph
    c = _Collector(model)
    ops: Counter[str] = Counter()
    for node in g.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        ops[op] += 1
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _qdq(c, node)
        elif node.op_type in _QLINEAR:
            _qlinear(c, node)
        elif node.op_type in _INTEGER:
            _integer(c, node)
        elif node.op_type == "DynamicQuantizeLinear":
            c.add(node.output[0], "uint8", None, None, None, None, node.op_type)
    params = sum(_param_bytes(t) for t in g.initializer)
    params += sum(
        _param_bytes(n.attribute[0].t)
        for n in g.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    )
    init = {t.name for t in g.initializer}
    return {
        "parameter_bytes": int(params),
        "op_counts": dict(ops),
        "inputs": [_tensor_info(v) for v in g.input if v.name not in init],
        "outputs": [_tensor_info(v) for v in g.output],
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "metadata": {p.key: p.value for p in model.metadata_props},
        "quantized": list(c.found.values()),
    }
