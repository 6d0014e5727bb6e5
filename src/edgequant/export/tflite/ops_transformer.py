"""Op builders for the float islands of transformer graphs and the arithmetic around them:

====================  ================================================  ======================
ONNX                  TFLite                                            integer node
====================  ================================================  ======================
LayerNormalization    MEAN, SUB, MUL, MEAN, ADD ε, RSQRT, MUL, MUL γ,    float (DEQUANTIZE /
                      ADD β (float32; LiteRT has no LayerNorm builtin)   QUANTIZE around it)
Gelu (and the Erf     GELU (approximate for ``tanh``)                   int8 GELU kernel;
pattern, fused at                                                       16-bit: float
ingest)
Sqrt / Neg            SQRT / NEG                                        float
Pow                   MUL x·x (exponent 2), SQRT (0.5), else POW        float
Max / Min             MAXIMUM / MINIMUM (two inputs)                    inputs requantized to
                                                                        the output's qparams
Clip (other bounds)   MAXIMUM lo, MINIMUM hi                            same, bounds quantized
                                                                        in the output's qparams
ReduceSum / Max / Min SUM / REDUCE_MAX / REDUCE_MIN                     float (16-bit) / int8
ReduceL2              MUL x·x, SUM, SQRT                                float
====================  ================================================  ======================

Standalone ``Erf`` has no TFLite builtin: outside the GELU pattern it is an error naming the
node.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite.convert import OP, OPT, Converter, TVal
from edgequant.export.tflite.ingest import Node, clip_activation
from edgequant.export.tflite.ops_data import float_only, operand


def _tmp(cv: Converter, node: Node, tag: str, shape, like: TVal) -> TVal:
    return cv.temp(f"{node.name}_{tag}", shape, np.float32, None, like.nhwc)


def _mean(cv: Converter, node: Node, x: TVal, axes: list[int], tag: str) -> TVal:
    shape = tuple(1 if k in axes else d for k, d in enumerate(x.shape))
    out = _tmp(cv, node, tag, shape, x)
    opt = schema.ReducerOptionsT()
    opt.keepDims = True
    cv.op(OP.MEAN, [x, cv.const(f"{node.name}_axes", np.array(axes, np.int32))], [out],
          OPT.ReducerOptions, opt)
    return out


def _binop(cv: Converter, node: Node, code: int, a: TVal, b: TVal, tag: str,
           out: TVal | None = None) -> TVal:
    opts = {OP.ADD: (OPT.AddOptions, schema.AddOptionsT), OP.SUB: (OPT.SubOptions,
                                                                    schema.SubOptionsT),
            OP.MUL: (OPT.MulOptions, schema.MulOptionsT), OP.DIV: (OPT.DivOptions,
                                                                    schema.DivOptionsT)}
    if out is None:
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        out = _tmp(cv, node, tag, shape, a)
    opt_type, opt_cls = opts.get(code, (0, None))
    cv.op(code, [a, b], [out], opt_type, opt_cls() if opt_cls else None)
    return out


def LayerNormalization(cv: Converter, node: Node) -> None:
    """LayerNormalization → float MEAN / SUB / MUL / MEAN / ADD ε / RSQRT / MUL / MUL γ / ADD β."""
    if any(node.outputs[1:]):
        raise UnsupportedOpError(f"node {node.name!r}: LayerNormalization Mean / InvStdDev "
                                 "outputs are not exported")
    float_only(cv, node, "LiteRT has no integer LayerNorm")
    x = cv.act(node.inputs[0], "nchw")
    rank = len(x.shape)
    axes = list(range(int(node.attrs.get("axis", -1)) % rank, rank))
    eps = np.float32(node.attrs.get("epsilon", 1e-5))
    mean = _mean(cv, node, x, axes, "mean")  # (…, 1) float32
    d = _binop(cv, node, OP.SUB, x, mean, "centered")  # (…, D)
    var = _mean(cv, node, _binop(cv, node, OP.MUL, d, d, "squared"), axes, "var")  # (…, 1)
    var = _binop(cv, node, OP.ADD, var, cv.const(f"{node.name}_eps", np.array([eps])),
                 "var_eps")
    rstd = _tmp(cv, node, "rstd", var.shape, x)
    cv.op(OP.RSQRT, [var], [rstd])
    y = _binop(cv, node, OP.MUL, d, rstd, "normed")
    gamma = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] else None
    beta = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    out = cv.output(node.outputs[0], cv.shape_of(node.outputs[0]))
    if gamma is not None:
        y = _binop(cv, node, OP.MUL, y, operand(cv, gamma), "scaled",
                   out if beta is None else None)
    if beta is not None:
        _binop(cv, node, OP.ADD, y, operand(cv, beta), "shifted", out)
    elif gamma is None:
        cv.op(OP.RESHAPE, [y, cv.const(f"{node.name}_shape", np.array(out.shape, np.int32))],
              [out])


def Gelu(cv: Converter, node: Node) -> None:
    """Gelu → GELU (``approximate='tanh'`` → approximate); int8 runs LiteRT's GELU table,
    16-bit activations run float (no int16 GELU kernel)."""
    approx = node.attrs.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    if approx not in ("none", "tanh"):
        raise UnsupportedOpError(f"node {node.name!r}: Gelu approximate={approx!r} (allowed: "
                                 "none, tanh)")
    if cv.act_dtype == np.int16:
        float_only(cv, node, "LiteRT has no int16 GELU kernel")
    x = cv.act(node.inputs[0])
    opt = schema.GeluOptionsT()
    opt.approximate = approx == "tanh"
    out = cv.output(node.outputs[0], cv.tflite_shape(node.outputs[0], x.nhwc), x.nhwc)
    cv.op(OP.GELU, [x], [out], OPT.GeluOptions, opt)


def Erf(cv: Converter, node: Node) -> None:
    """Standalone Erf: no TFLite builtin (the GELU pattern around it is fused at ingest)."""
    raise UnsupportedOpError(f"node {node.name!r}: op Erf has no TFLite builtin; only the GELU "
                             "pattern x·0.5·(1 + erf(x/√2)) is exported (as GELU)")


def _float_unary(cv: Converter, node: Node, code: int, what: str) -> None:
    float_only(cv, node, what)
    x = cv.act(node.inputs[0])
    out = cv.output(node.outputs[0], cv.tflite_shape(node.outputs[0], x.nhwc), x.nhwc)
    cv.op(code, [x], [out])


def Sqrt(cv: Converter, node: Node) -> None:
    """Sqrt → SQRT (float)."""
    _float_unary(cv, node, OP.SQRT, "SQRT runs float")


def Neg(cv: Converter, node: Node) -> None:
    """Neg → NEG (float)."""
    _float_unary(cv, node, OP.NEG, "NEG runs float here")


def Pow(cv: Converter, node: Node) -> None:
    """Pow: constant exponent 2 → MUL x·x, 0.5 → SQRT, 1 → identity RESHAPE, else POW (float)."""
    float_only(cv, node, "POW runs float")
    e = cv.g.value(node.inputs[1])
    x = cv.act(node.inputs[0], "nchw")
    out = cv.output(node.outputs[0], cv.shape_of(node.outputs[0]))
    e = None if e is None or np.size(e) != 1 else float(np.ravel(e)[0])
    if e == 2.0:
        _binop(cv, node, OP.MUL, x, x, "sq", out)
    elif e == 0.5:
        cv.op(OP.SQRT, [x], [out])
    else:
        cv.op(OP.POW, [x, operand(cv, node.inputs[1])], [out])


def _minmax_chain(cv: Converter, node: Node, x: TVal, bounds: list[tuple[int, str]]) -> None:
    """``x`` through MAXIMUM / MINIMUM with operands ``bounds`` [(op, tensor name)] in the
    output's qparams (integer) or float."""
    out_name = node.outputs[0]
    shape = cv.shape_of(out_name)
    quant = cv.act_quant(out_name) if cv.q else None
    if cv.q:
        x = cv.requant(x, quant, f"{node.name}_in")
    for k, (code, name) in enumerate(bounds):
        b = operand(cv, name, quant)
        if cv.q:
            b = cv.requant(b, quant, f"{node.name}_bound{k}")
        last = k == len(bounds) - 1
        out = cv.output(out_name, shape) if last else cv.temp(
            f"{node.name}_step{k}", shape, x.dtype, quant)
        cv.op(code, [x, b], [out])
        x = out


def Max(cv: Converter, node: Node) -> None:
    """Max of two (or more) tensors → MAXIMUM chain."""
    x = operand(cv, node.inputs[0], cv.act_quant(node.outputs[0]) if cv.q else None)
    _minmax_chain(cv, node, x, [(OP.MAXIMUM, n) for n in node.inputs[1:] if n])


def Min(cv: Converter, node: Node) -> None:
    """Min of two (or more) tensors → MINIMUM chain."""
    x = operand(cv, node.inputs[0], cv.act_quant(node.outputs[0]) if cv.q else None)
    _minmax_chain(cv, node, x, [(OP.MINIMUM, n) for n in node.inputs[1:] if n])


def Clip(cv: Converter, node: Node) -> None:
    """Clip: the RELU family when the bounds match one (``ops_elementwise.Clip``), else
    MAXIMUM min / MINIMUM max with constant bounds (``torch.clamp(min=1e-9)``)."""
    from edgequant.export.tflite import ops_elementwise

    if clip_activation(node, cv.g.consts) is not None:
        ops_elementwise.Clip(cv, node)
        return
    bounds = []
    for k, code in ((1, OP.MAXIMUM), (2, OP.MINIMUM)):
        if len(node.inputs) > k and node.inputs[k]:
            if cv.g.value(node.inputs[k]) is None:
                raise UnsupportedOpError(f"node {node.name!r}: Clip bounds must be constants")
            bounds.append((code, node.inputs[k]))
    if "min" in node.attrs or "max" in node.attrs:
        raise UnsupportedOpError(f"node {node.name!r}: Clip-6 attributes min / max are not "
                                 "exported (use opset ≥ 11 inputs)")
    x = cv.act(node.inputs[0], "nchw")
    if not bounds:
        from edgequant.export.tflite.ops_layout import Identity
        Identity(cv, node)
        return
    _minmax_chain(cv, node, x, bounds)
