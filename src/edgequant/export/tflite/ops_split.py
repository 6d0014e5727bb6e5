"""Op builder for ONNX Split → TFLite SPLIT (equal parts) or SPLIT_V (given sizes).

Part sizes come from the ``split`` input (opset 13+, a constant), ``num_outputs`` (opset 18:
``ceil(D / n)`` each, the last one smaller) or, without either, equal parts. A tensor stored
channels-last (after a Conv) is split there, with the axis remapped, so no TRANSPOSE is added.

Integer SPLIT / SPLIT_V copy the input's integers: each part carries the input's qparams.
The QDQ graph runs Split on floats (``DQ → Split → Q`` per part, each part with its own
calibrated qparams), so a part whose qparams differ gets a QUANTIZE (integer → integer)
from the input's qparams to its own — the same ``Q(DQ(x))`` onnxruntime computes, rounded in
fixed point.
"""

from __future__ import annotations

import math

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.convert import LAST, OP, OPT, Converter
from edgequant.export.tflite.ingest import Node
from edgequant.export.tflite.layout import nhwc_axis


def split_sizes(cv: Converter, node: Node, dim: int) -> list[int]:
    """Sizes of the parts of a Split node along an axis of length ``dim``."""
    n_out = len(node.outputs)
    if len(node.inputs) > 1 and node.inputs[1]:
        split = cv.g.value(node.inputs[1])
        if split is None:
            raise UnsupportedOpError(f"node {node.name!r}: Split with a computed 'split' input "
                                     "is not exported (it must be a constant)")
        sizes = [int(v) for v in np.ravel(split)]
    elif "split" in node.attrs:  # opset < 13 attribute
        sizes = [int(v) for v in node.attrs["split"]]
    elif "num_outputs" in node.attrs or n_out > 1:
        n = int(node.attrs.get("num_outputs", n_out))
        chunk = math.ceil(dim / n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    else:
        sizes = [dim]
    if len(sizes) != n_out or sum(sizes) != dim or min(sizes) < 0:
        raise UnsupportedOpError(f"node {node.name!r}: Split sizes {sizes} do not cut an axis of "
                                 f"length {dim} into {n_out} outputs")
    return sizes


def Split(cv: Converter, node: Node) -> None:
    """Split → SPLIT (equal parts) or SPLIT_V (module docstring)."""
    x_name = node.inputs[0]
    in_shape = cv.shape_of(x_name)
    rank = len(in_shape)
    axis = int(node.attrs.get("axis", 0)) % rank
    sizes = split_sizes(cv, node, in_shape[axis])
    src = cv.vals.get((x_name, "src", False))
    nhwc = rank in (3, 4) and src is not None and src.nhwc
    x = cv.act(x_name, LAST[rank] if nhwc else "nchw")
    t_axis = nhwc_axis(axis, rank) if nhwc else axis
    outs, requants = [], []
    for k, (name, size) in enumerate(zip(node.outputs, sizes, strict=True)):
        shape = list(x.shape)
        shape[t_axis] = size
        if not name:  # an unused part: the op still writes it
            outs.append(cv.temp(f"{node.name}_part{k}", shape, x.dtype, x.quant, nhwc))
        elif not cv.q or cv.act_quant(name).same_as(x.quant):
            outs.append(cv.output(name, shape, nhwc))
        else:  # the part's own qparams: SPLIT writes the input's, a QUANTIZE follows
            tmp = cv.temp(f"{name}_pre", shape, cv.act_dtype, x.quant, nhwc)
            outs.append(tmp)
            requants.append((tmp, name, shape))
    axis_t = cv.const(f"{node.name}_axis", np.array(t_axis, np.int32))
    if len(set(sizes)) == 1:
        opt = schema.SplitOptionsT()
        opt.numSplits = len(sizes)
        cv.op(OP.SPLIT, [axis_t, x], outs, OPT.SplitOptions, opt)
    else:
        opt = schema.SplitVOptionsT()
        opt.numSplits = len(sizes)
        sizes_t = cv.const(f"{node.name}_sizes", np.array(sizes, np.int32))
        cv.op(OP.SPLIT_V, [x, sizes_t, axis_t], outs, OPT.SplitVOptions, opt)
    for tmp, name, shape in requants:
        cv.op(OP.QUANTIZE, [tmp], [cv.output(name, shape, nhwc)])
