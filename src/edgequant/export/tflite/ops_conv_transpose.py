"""Op builder for ONNX ConvTranspose (2-D, and 1-D through a height-1 2-D) → TRANSPOSE_CONV.

ConvTranspose always runs float: edgequant's plan has no integer ConvTranspose (onnxruntime
runs the QDQ node on floats, its weights are float initializers), so in a quantized graph
the exported TRANSPOSE_CONV sits between DEQUANTIZE and QUANTIZE like every float node. A
weight stored quantized in the ONNX model is dequantized (float32, noted).

Geometry. ONNX places the output at ``full[pads_begin : pads_begin + out]`` of the full
transposed convolution ``(in − 1)·s + k`` (zeros + bias past its end: ``output_padding``,
a larger ``output_shape``). LiteRT's TRANSPOSE_CONV takes the output shape, derives its
leading pad from SAME / VALID of that output and requires the input size that output implies
(:func:`~edgequant.interp.tflite.split_deconv.transpose_conv_geometry`). When SAME or VALID
fits (PyTorch's k=4 s=2 p=1, k=2 s=2, k=3 s=1 p=1) the op writes the ONNX output directly;
otherwise (k=3 s=2 p=1 output_padding=1, asymmetric pads) it writes
``max(full, pads_begin + out)`` with VALID (leading pad 0) and a STRIDED_SLICE keeps
``[pads_begin, pads_begin + out)``. TFLite has no group or dilation for TRANSPOSE_CONV:
those are refused, naming the node.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.convert import ACT, OP, OPT, Converter, TVal, natural_dom
from edgequant.export.tflite.ingest import Node, QConst
from edgequant.export.tflite.ops_compute import _optional, _weight, reshape_to
from edgequant.export.tflite.weights import float_weight
from edgequant.interp.ops.conv_transpose import transpose_geometry
from edgequant.interp.tflite.split_deconv import transpose_conv_geometry


def _attrs(node: Node) -> dict:
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in node.attrs.items()}


def _geometry(node: Node, xhw, begin, out, kernel, strides) -> tuple[str, list[int]]:
    """(padding mode, output size TRANSPOSE_CONV writes): the ONNX output itself when SAME or
    VALID places it (same leading pads, and the input size LiteRT derives from the output
    matches), else the VALID output of ``pads_begin + out`` (≥ the full size) to be cropped."""
    for name in ("SAME", "VALID"):
        code = getattr(schema.Padding, name)
        if all(transpose_conv_geometry(code, o, k, s) == (i, p)
               for i, p, o, k, s in zip(xhw, begin, out, kernel, strides, strict=True)):
            return name, list(out)
    size = [max((i - 1) * s + k, p + o)
            for i, p, o, k, s in zip(xhw, begin, out, kernel, strides, strict=True)]
    if any(transpose_conv_geometry(schema.Padding.VALID, z, k, s)[0] != i
           for z, i, k, s in zip(size, xhw, kernel, strides, strict=True)):
        raise UnsupportedOpError(f"node {node.name!r}: ConvTranspose output {list(out)} (pads "
                                 f"begin {list(begin)}) extends past the full transposed "
                                 "convolution by a stride or more: TFLite TRANSPOSE_CONV "
                                 "cannot write it")
    return "VALID", size


def _float_input(cv: Converter, name: str, layout: str) -> TVal:
    """Input ``name`` as float32 in ``layout``, as the QDQ graph feeds it: a tensor with
    qparams is read through its integers (``DQ(Q(x))``) even when a float op produced it
    (onnxruntime's quantizer leaves such a Relu float and quantizes its output)."""
    src = cv.vals.get((name, "src", False))
    qp = cv.g.act_q.get(name)
    if src is None or qp is None or src.is_int or src.plain:
        return cv.act(name, layout)
    dom, cv.dom = cv.dom, natural_dom(qp)
    try:
        xi = cv.act(name, layout)  # QUANTIZE to the tensor's own type (cached)
    finally:
        cv.dom = dom
    key = (name, "f_rounded", xi.nhwc)
    if key not in cv.vals:
        out = cv.temp(f"{name}_rounded", xi.shape, np.float32, None, xi.nhwc)
        cv.op(OP.DEQUANTIZE, [xi], [out])
        cv.vals[key] = out
    return cv.vals[key]


def ConvTranspose(cv: Converter, node: Node) -> None:
    """ConvTranspose (group 1, dilation 1) → TRANSPOSE_CONV, float (module docstring)."""
    w = _weight(cv, node, node.inputs[1])
    bname = _optional(node, 2)
    b = _weight(cv, node, bname) if bname else None
    wf = float_weight(w)  # (C_in, C_out, k…)
    xshape = cv.shape_of(node.inputs[0])
    attrs = _attrs(node)
    group = int(attrs.get("group", 1))
    if wf.ndim not in (3, 4):
        raise UnsupportedOpError(f"node {node.name!r}: only 1-D and 2-D ConvTranspose are "
                                 f"exported (weight rank {wf.ndim})")
    if group != 1:
        raise UnsupportedOpError(f"node {node.name!r}: ConvTranspose group={group}: TFLite "
                                 "TRANSPOSE_CONV has no groups; only group=1 is exported")
    kernel = list(attrs.get("kernel_shape") or wf.shape[2:])
    strides, dil, begin, out = transpose_geometry(attrs, list(xshape[2:]), kernel)
    if any(d != 1 for d in dil):
        raise UnsupportedOpError(f"node {node.name!r}: ConvTranspose dilations={list(dil)}: "
                                 "TFLite TRANSPOSE_CONV has no dilation; only 1 is exported")
    one_d = wf.ndim == 3
    if one_d:  # a height-1 2-D transposed convolution
        kernel, strides, begin, out = [1, *kernel], [1, *strides], [0, *begin], [1, *out]
        wf = wf[:, :, None, :]  # (C_in, C_out, 1, k)
    if cv.q and cv.strict:
        raise UnsupportedOpError(f"node {node.name!r} (ConvTranspose) runs float (TFLite "
                                 "TRANSPOSE_CONV is exported float here); strict export allows "
                                 "integer ops only")
    if cv.q or cv.mode == "dynamic" or isinstance(w, QConst):
        if cv.q:
            cv.float_nodes.append(node.name)
        if isinstance(w, QConst):
            cv.note(f"weight {node.inputs[1]!r}: TRANSPOSE_CONV runs float here; the "
                    "quantized ConvTranspose weight is stored dequantized (float32)")
        cv.dom = "f"  # float kernel whatever the neighbours (module docstring)
    xhw = [1, *xshape[2:]] if one_d else list(xshape[2:])
    mode, size = _geometry(node, xhw, begin, out, kernel, strides)
    crop = size != list(out)
    if one_d:
        x3 = _float_input(cv, node.inputs[0], "nlc")  # (N, L, C)
        x = reshape_to(cv, x3, (x3.shape[0], 1, *x3.shape[1:]), f"{node.name}_2d")
    else:
        x = _float_input(cv, node.inputs[0], "nhwc")
    n, c_out = xshape[0], wf.shape[1]
    full = (n, *size, c_out)  # NHWC shape TRANSPOSE_CONV writes
    half = cv.g.half
    wt = cv.float_const(f"{node.name}_weight", np.ascontiguousarray(
        wf.transpose(1, 2, 3, 0)), node.inputs[1] in half)  # (C_out, kh, kw, C_in)
    bias = float_weight(b) if b is not None else np.zeros(c_out, np.float32)
    bt = cv.float_const(f"{node.name}_bias", np.asarray(bias, np.float32).reshape(c_out),
                        bname in half)
    shape_t = cv.const(f"{node.name}_output_shape", np.array(full, np.int32))
    y_name = node.outputs[0]
    direct = not crop and not one_d
    y = cv.output(y_name, cv.tflite_shape(y_name, True), nhwc=True) if direct else \
        cv.temp(f"{y_name}_full", full, np.float32, None, True)
    opt = schema.TransposeConvOptionsT()
    opt.padding = getattr(schema.Padding, mode)
    opt.strideH, opt.strideW = strides
    opt.fusedActivationFunction = ACT[node.attrs.get("_act")]
    cv.op(OP.TRANSPOSE_CONV, [shape_t, wt, x, bt], [y], OPT.TransposeConvOptions, opt)
    if crop:  # keep [pads_begin, pads_begin + out) of each spatial axis
        sliced = (n, *out, c_out)
        start = (0, *begin, 0)
        stop = tuple(a + b_ for a, b_ in zip(start, sliced, strict=True))
        ins = [y, *(cv.const(f"{node.name}_{k}", np.array(v, np.int32)) for k, v in (
            ("begin", start), ("end", stop), ("strides", (1, 1, 1, 1))))]
        # a 2-D output is the ONNX tensor; a 1-D one is reshaped below
        y = cv.output(y_name, sliced, nhwc=True) if not one_d else \
            cv.temp(f"{y_name}_cropped", sliced, np.float32, None, True)
        cv.op(OP.STRIDED_SLICE, ins, [y], OPT.StridedSliceOptions,
              schema.StridedSliceOptionsT())
    if one_d:  # (N, 1, L_out, C_out) → (N, L_out, C_out), channels-last
        out3 = cv.output(y_name, cv.tflite_shape(y_name, True), nhwc=True)
        ropt = schema.ReshapeOptionsT()
        ropt.newShape = list(out3.shape)
        cv.op(OP.RESHAPE, [y, cv.const(f"{y_name}_shape", np.array(out3.shape, np.int32))],
              [out3], OPT.ReshapeOptions, ropt)
