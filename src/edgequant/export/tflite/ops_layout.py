"""Op builders for data-movement and pooling ops: Reshape / Flatten / Squeeze / Unsqueeze →
RESHAPE, Transpose, Concat, Pad, MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool
(2-D, and 1-D through a height-1 RESHAPE), ReduceMean → MEAN, Identity / Dropout.

Their integer kernels keep the input's qparams (no requantization inside TFLite), so when
the ONNX output carries other qparams a QUANTIZE follows (:meth:`Converter.passthrough`).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.convert import LAST, OP, OPT, Converter
from edgequant.export.tflite.ingest import Node
from edgequant.export.tflite.layout import (
    TO_NHWC,
    flatten_permutation,
    nhwc_axis,
    onnx_pads,
    padding_mode,
    to_first,
)
from edgequant.export.tflite.ops_compute import (
    PADDING,
    conv1d_as_2d,
    nhwc_input,
    pad_nhwc,
)


def _is_nhwc(cv: Converter, name: str) -> bool:
    src = cv.vals.get((name, "src", False))
    return src is not None and src.nhwc


def _fc_consumer(cv: Converter, name: str, node: Node) -> bool:
    if node.op_type == "Gemm":
        return node.inputs[0] == name and cv.g.value(node.inputs[1]) is not None \
            and not node.attrs.get("transA", 0)
    if node.op_type == "MatMul":
        v = cv.g.value(node.inputs[1])
        return node.inputs[0] == name and v is not None and v.ndim == 2
    return False


def _reshape(cv: Converter, node: Node) -> None:
    x_name, y_name = node.inputs[0], node.outputs[0]
    in_shape, out_shape = cv.shape_of(x_name), cv.shape_of(y_name)
    perm = None
    layout = "nchw"
    if _is_nhwc(cv, x_name) and len(in_shape) == 4:
        n, c, h, w = in_shape
        consumers = cv.g.consumers(y_name)
        if h * w == 1 or c == 1:  # NHWC and NCHW orders coincide
            layout = "any"
        elif (len(out_shape) == 2 and out_shape[0] == n and consumers
              and y_name not in cv.g.outputs
              and all(_fc_consumer(cv, y_name, c_) for c_ in consumers)):
            layout, perm = "nhwc", flatten_permutation(c, h, w)
    x = cv.act(x_name, layout)
    shape_t = cv.const(f"{node.name}_shape", np.array(out_shape, np.int32))
    opt = schema.ReshapeOptionsT()
    opt.newShape = list(out_shape)
    out = cv.passthrough(OP.RESHAPE, [x, shape_t], y_name, out_shape, False, x.quant,
                         OPT.ReshapeOptions, opt)
    out.flat_perm = perm


Reshape = Flatten = Squeeze = Unsqueeze = _reshape


def Identity(cv: Converter, node: Node) -> None:
    """Identity / Dropout (inference): the output is the input tensor. An integer Identity
    whose output has other qparams (a precision seam read from the QDQ graph, e.g. int8 →
    int16) is one QUANTIZE from the input's integers to the output's."""
    src = cv.vals[(node.inputs[0], "src", False)]
    if cv.q and src.is_int:
        want = cv.act_quant(node.outputs[0])
        if src.dtype != cv.act_dtype or not want.same_as(src.quant):
            out = cv.output(node.outputs[0], src.shape, src.nhwc)
            out.flat_perm = src.flat_perm
            cv.op(OP.QUANTIZE, [src], [out])
            return
    for k, v in list(cv.vals.items()):
        if k[0] == node.inputs[0]:
            cv.vals[(node.outputs[0], k[1], k[2])] = v
    cv.vals[(node.outputs[0], "src", False)] = src


Dropout = Identity


def Transpose(cv: Converter, node: Node) -> None:
    """Transpose; a perm applied to an NHWC-stored tensor is composed with the layout perm."""
    rank = len(cv.shape_of(node.inputs[0]))
    perm = list(node.attrs.get("perm", range(rank)[::-1]))
    x = cv.act(node.inputs[0])
    if x.nhwc:
        perm = [to_first(rank)[p] for p in perm]  # ONNX perm of NCHW data, NHWC storage
    out_shape = cv.shape_of(node.outputs[0])
    cv.passthrough(OP.TRANSPOSE, [x, cv.const(f"{node.name}_perm", np.array(perm, np.int32))],
                   node.outputs[0], out_shape, False, x.quant, OPT.TransposeOptions,
                   schema.TransposeOptionsT())


def Concat(cv: Converter, node: Node) -> None:
    """Concat → CONCATENATION; integer inputs are first requantized to the output's qparams."""
    names = [i for i in node.inputs if i]
    if any(cv.g.value(n) is not None for n in names):
        raise UnsupportedOpError(f"node {node.name!r}: Concat of a constant is not exported")
    rank = len(cv.shape_of(node.outputs[0]))
    axis = int(node.attrs["axis"]) % rank
    nhwc = rank in (3, 4) and any(_is_nhwc(cv, n) for n in names)  # channels-last storage
    xs = [cv.act(n, LAST[rank] if nhwc else "nchw") for n in names]
    out = cv.output(node.outputs[0], cv.tflite_shape(node.outputs[0], nhwc), nhwc)
    if cv.q:  # TFLite int8/int16 CONCATENATION requires identical qparams everywhere
        xs = [cv.requant(x, out.quant, f"{node.name}_in{k}") for k, x in enumerate(xs)]
    opt = schema.ConcatenationOptionsT()
    opt.axis = nhwc_axis(axis, rank) if nhwc else axis
    cv.op(OP.CONCATENATION, xs, [out], OPT.ConcatenationOptions, opt)


def Pad(cv: Converter, node: Node) -> None:
    """Pad → PAD (constant 0: integer PAD fills with the zero point, i.e. real 0), PADV2
    (another constant, stored in the input's qparams when integer), MIRROR_PAD REFLECT
    (reflect) or SYMMETRIC (edge with pads ≤ 1, where repeating the edge is the same)."""
    mode = node.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = cv.g.value(node.inputs[1]) if len(node.inputs) > 1 else node.attrs.get("pads")
    value = cv.g.value(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else 0.0
    if pads is None or value is None:
        raise UnsupportedOpError(f"node {node.name!r}: Pad with computed pads or value is not "
                                 "exported (pads and constant_value must be constants)")
    if len(node.inputs) > 3 and node.inputs[3]:
        raise UnsupportedOpError(f"node {node.name!r}: Pad input axes is not exported")
    pads = np.asarray(pads, np.int64)
    if np.any(pads < 0):
        raise UnsupportedOpError(f"node {node.name!r}: negative pads {pads.tolist()} (a crop) "
                                 "are not exported")
    value = float(np.asarray(value).reshape(()))
    if mode == "edge" and pads.max() > 1:
        raise UnsupportedOpError(f"node {node.name!r}: Pad attribute mode='edge' with pads "
                                 f"{pads.tolist()}: TFLite MIRROR_PAD SYMMETRIC equals edge for "
                                 "pads ≤ 1 only")
    if mode not in ("constant", "reflect", "edge"):
        raise UnsupportedOpError(f"node {node.name!r}: Pad attribute mode={mode!r}: allowed "
                                 "constant, reflect, edge")
    rank = pads.size // 2
    pairs = np.stack([pads[:rank], pads[rank:]], axis=1)  # (rank, 2)
    nhwc = rank == 4 and _is_nhwc(cv, node.inputs[0])
    if nhwc:
        pairs = pairs[list(TO_NHWC)]
    x = cv.act(node.inputs[0], "nhwc" if nhwc else "nchw")
    ins = [x, cv.const(f"{node.name}_paddings", pairs.astype(np.int32))]
    code, opt_type, opt = OP.PAD, OPT.PadOptions, schema.PadOptionsT()
    if mode != "constant":
        code, opt_type, opt = OP.MIRROR_PAD, OPT.MirrorPadOptions, schema.MirrorPadOptionsT()
        opt.mode = schema.MirrorPadMode.REFLECT if mode == "reflect" else \
            schema.MirrorPadMode.SYMMETRIC
    elif value != 0.0:
        code, opt_type, opt = OP.PADV2, OPT.PadV2Options, schema.PadV2OptionsT()
        if cv.q:
            s, z = float(x.quant.scale[0]), int(x.quant.zero_point[0])
            info = np.iinfo(x.dtype)
            q = np.array([np.clip(np.rint(value / s) + z, info.min, info.max)], x.dtype)
            ins.append(cv.const(f"{node.name}_value", q, x.quant))
        else:
            ins.append(cv.const(f"{node.name}_value", np.array([value], np.float32)))
    cv.passthrough(code, ins, node.outputs[0], cv.tflite_shape(node.outputs[0], nhwc), nhwc,
                   x.quant, opt_type, opt)


def _pool(cv: Converter, node: Node, code: int, kernel, strides, pads, count_pad=False) -> None:
    """2-D pooling; 1-D pooling (a 3-D input, kernel / strides / pads already given as
    height-1 2-D ones) runs on the (N, 1, L, C) RESHAPE of the channels-last input."""
    x_shape = cv.shape_of(node.inputs[0])
    one_d = len(x_shape) == 3
    if one_d:
        x_shape = (x_shape[0], x_shape[1], 1, x_shape[2])
    if len(x_shape) != 4:
        raise UnsupportedOpError(f"node {node.name!r}: only 1-D and 2-D pooling are exported")
    if node.attrs.get("ceil_mode", 0):
        floor_hw = [(x_shape[2 + i] + pads[i] + pads[i + 2] - kernel[i]) // strides[i] + 1
                    for i in range(2)]
        if [1] * one_d + list(cv.shape_of(node.outputs[0])[2:]) != floor_hw:
            raise UnsupportedOpError(f"node {node.name!r}: ceil_mode changes the output size")
    if any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
        raise UnsupportedOpError(f"node {node.name!r}: dilated pooling is not exported")
    mode = padding_mode(x_shape[2:], kernel, strides, (1, 1), pads)
    x = nhwc_input(cv, node, one_d)
    if mode is None or (mode == "SAME" and count_pad):
        if code != OP.AVERAGE_POOL_2D or not count_pad:
            raise UnsupportedOpError(f"node {node.name!r}: pads {pads} are neither SAME nor "
                                     "VALID (only count_include_pad AveragePool can be padded)")
        x = pad_nhwc(cv, x, pads, node.name)
        mode = "VALID"
    opt = schema.Pool2DOptionsT()
    opt.padding = PADDING[mode]
    opt.strideH, opt.strideW = strides
    opt.filterHeight, opt.filterWidth = kernel
    y_name = node.outputs[0]
    if not one_d:
        cv.passthrough(code, [x], y_name, cv.tflite_shape(y_name, True), True, x.quant,
                       OPT.Pool2DOptions, opt)
        return
    n, c, length = cv.shape_of(y_name)
    pooled = cv.temp(f"{y_name}_2d", (n, 1, length, c), x.dtype, x.quant, True)
    cv.op(code, [x], [pooled], OPT.Pool2DOptions, opt)  # integer pools keep the qparams
    shape = (n, length, c)  # back to (N, L_out, C), channels-last
    ropt = schema.ReshapeOptionsT()
    ropt.newShape = list(shape)
    cv.passthrough(OP.RESHAPE, [pooled, cv.const(f"{y_name}_shape", np.array(shape, np.int32))],
                   y_name, shape, True, pooled.quant, OPT.ReshapeOptions, ropt)


def _pool_attrs(cv: Converter, node: Node):
    attrs = node.attrs
    size = cv.shape_of(node.inputs[0])[2:]
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) == 1:  # 1-D pooling as height-1 2-D
        attrs, size, kernel = conv1d_as_2d(attrs), (1, *size), (1, *kernel)
    strides = tuple(attrs.get("strides", [1, 1]))
    pads = onnx_pads(attrs, size, kernel, strides, (1, 1))
    return kernel, strides, pads


def MaxPool(cv: Converter, node: Node) -> None:
    """MaxPool → MAX_POOL_2D (SAME or VALID padding only: TFLite cannot pad with −inf)."""
    if len(node.outputs) > 1 and node.outputs[1]:
        raise UnsupportedOpError(f"node {node.name!r}: MaxPool indices output is not exported")
    _pool(cv, node, OP.MAX_POOL_2D, *_pool_attrs(cv, node))


def AveragePool(cv: Converter, node: Node) -> None:
    """AveragePool → AVERAGE_POOL_2D (TFLite SAME excludes padding = count_include_pad 0)."""
    _pool(cv, node, OP.AVERAGE_POOL_2D, *_pool_attrs(cv, node),
          count_pad=bool(node.attrs.get("count_include_pad", 0)))


def GlobalAveragePool(cv: Converter, node: Node) -> None:
    """GlobalAveragePool → AVERAGE_POOL_2D over the whole H×W (exact integer rounding)."""
    hw = tuple(cv.shape_of(node.inputs[0])[2:])
    hw = (1, *hw) if len(hw) == 1 else hw
    _pool(cv, node, OP.AVERAGE_POOL_2D, hw, (1, 1), (0, 0, 0, 0))


def GlobalMaxPool(cv: Converter, node: Node) -> None:
    """GlobalMaxPool → MAX_POOL_2D over the whole H×W."""
    hw = tuple(cv.shape_of(node.inputs[0])[2:])
    hw = (1, *hw) if len(hw) == 1 else hw
    _pool(cv, node, OP.MAX_POOL_2D, hw, (1, 1), (0, 0, 0, 0))


def ReduceMean(cv: Converter, node: Node) -> None:
    """ReduceMean → MEAN (axes remapped when the input is stored NHWC)."""
    rank = len(cv.shape_of(node.inputs[0]))
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = cv.g.value(node.inputs[1])
    axes = sorted(int(a) % rank for a in (range(rank) if axes is None else np.ravel(axes)))
    keep = bool(node.attrs.get("keepdims", 1))
    # channels-last storage (4-D NHWC, 3-D (N, L, C) of a Conv1d) is kept when the result
    # keeps its rank or drops exactly the spatial axes (x.mean(-1) of a Conv1d stack)
    nhwc = rank in (3, 4) and _is_nhwc(cv, node.inputs[0]) and (
        keep or axes == list(range(2, rank)))
    x = cv.act(node.inputs[0], LAST[rank] if nhwc else "nchw")
    t_axes = sorted(nhwc_axis(a, rank) for a in axes) if nhwc else axes
    out = cv.output(node.outputs[0], cv.tflite_shape(node.outputs[0], nhwc and keep),
                    nhwc and keep)
    opt = schema.ReducerOptionsT()
    opt.keepDims = keep
    cv.op(OP.MEAN, [x, cv.const(f"{node.name}_axes", np.array(t_axes, np.int32))], [out],
          OPT.ReducerOptions, opt)
