"""Turn a model argument (path, ModelProto, onnx_ir.Model) into a ModelProto, and read its
initializers and node attributes as numpy values."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgequant.graph.io import load_model


def load_proto(model: Any) -> onnx.ModelProto:
    """ModelProto from a path, a ModelProto (used as is, never modified) or an onnx_ir.Model."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, str | os.PathLike):
        # the project's safe loader: external data must stay in the model's folder, checker
        return load_model(model)
    try:
        import onnx_ir as ir
    except ImportError:  # pragma: no cover - onnx_ir is a dependency
        ir = None
    if ir is not None and isinstance(model, ir.Model):
        return ir.serde.serialize_model(model)
    raise TypeError(
        f"model of type {type(model).__name__} is not allowed: use a path, onnx.ModelProto "
        "or onnx_ir.Model"
    )


def tensor_value(t: onnx.TensorProto) -> np.ndarray:
    """numpy array of a TensorProto (int4 as ml_dtypes.int4, external data already loaded)."""
    return numpy_helper.to_array(t)


def attribute_values(node: onnx.NodeProto) -> dict[str, Any]:
    """Node attributes as Python values: tensors → arrays, strings → str."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            v = tensor_value(v)
        elif isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


def elem_numpy_dtype(value_info: onnx.ValueInfoProto) -> np.dtype | None:
    """numpy dtype declared by a graph input/output, or None if not a typed tensor."""
    tt = value_info.type.tensor_type
    if not tt.elem_type:
        return None
    return np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
