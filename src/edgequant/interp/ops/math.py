"""More element-wise ops: logs, trigonometry, rounding, activations (Softplus, Elu, Selu,
PRelu, Mish, Swish, Celu, ...), n-ary Sum / Mean, Mod, Xor, bitwise ops, IsNaN / IsInf, CastLike,
Dropout. Float ops keep the input's dtype."""

from __future__ import annotations

import numpy as np

from edgequant.interp.ops.elementwise import _same
from edgequant.interp.registry import NodeContext, register


@register()
def Log(ctx: NodeContext, x):
    """ln x."""
    return np.log(x)


@register()
def Reciprocal(ctx: NodeContext, x):
    """1 / x."""
    return _same(x, np.reciprocal(x))


@register()
def Floor(ctx: NodeContext, x):
    """⌊x⌋."""
    return np.floor(x)


@register()
def Ceil(ctx: NodeContext, x):
    """⌈x⌉."""
    return np.ceil(x)


@register()
def Sign(ctx: NodeContext, x):
    """−1, 0 or 1 (in x's dtype)."""
    return np.sign(x)


@register()
def Sin(ctx: NodeContext, x):
    """sin x."""
    return np.sin(x)


@register()
def Cos(ctx: NodeContext, x):
    """cos x."""
    return np.cos(x)


@register()
def Atan(ctx: NodeContext, x):
    """arctan x."""
    return np.arctan(x)


@register()
def Softplus(ctx: NodeContext, x):
    """ln(1 + eˣ), computed without overflow for large x."""
    return _same(x, np.logaddexp(0, x))


@register()
def Elu(ctx: NodeContext, x):
    """x if x ≥ 0 else alpha · (eˣ − 1)."""
    alpha = ctx.attr("alpha", 1.0)
    return _same(x, np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0))))


@register()
def Selu(ctx: NodeContext, x):
    """gamma · (x if x > 0 else alpha · (eˣ − 1)) (ONNX's default alpha and gamma)."""
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return _same(x, gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))))


@register()
def PRelu(ctx: NodeContext, x, slope):
    """x if x ≥ 0 else slope · x (slope broadcast against x)."""
    return _same(x, np.where(x >= 0, x, x * slope))


@register()
def Mish(ctx: NodeContext, x):
    """x · tanh(softplus(x))."""
    return _same(x, x * np.tanh(np.logaddexp(0, x)))


@register()
def Sum(ctx: NodeContext, *xs):
    """Element-wise sum of all inputs (broadcast)."""
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return _same(xs[0], out)


@register()
def Mean(ctx: NodeContext, *xs):
    """Element-wise mean of all inputs (broadcast)."""
    return _same(xs[0], Sum(ctx, *xs) / np.asarray(len(xs), xs[0].dtype))


@register()
def Mod(ctx: NodeContext, a, b):
    """Remainder: sign of the divisor (Python ``%``) by default, of the dividend with
    ``fmod=1`` (C ``fmod``; required for floats)."""
    if ctx.attr("fmod", 0):
        return _same(a, np.fmod(a, b))
    if np.asarray(a).dtype.kind == "f":
        raise ValueError(f"Mod node {ctx.name!r}: float inputs need attribute fmod=1")
    return _same(a, np.mod(a, b))


@register()
def Xor(ctx: NodeContext, a, b):
    """Logical exclusive or."""
    return np.logical_xor(a, b)


@register()
def IsNaN(ctx: NodeContext, x):
    """x is NaN (bool)."""
    return np.isnan(x)


@register()
def IsInf(ctx: NodeContext, x):
    """x is +∞ (``detect_positive``) or −∞ (``detect_negative``), both by default."""
    pos = bool(ctx.attr("detect_positive", 1))
    neg = bool(ctx.attr("detect_negative", 1))
    return (np.isposinf(x) & pos) | (np.isneginf(x) & neg)


@register()
def Dropout(ctx: NodeContext, x, ratio=None, training_mode=None):
    """Inference: x unchanged and an all-true mask (``training_mode`` must be false)."""
    if training_mode is not None and bool(np.asarray(training_mode)):
        raise ValueError(f"Dropout node {ctx.name!r}: training_mode=True is not supported "
                         "(the interpreter runs inference only)")
    return x, np.ones(np.shape(x), bool)


@register()
def Swish(ctx: NodeContext, x):
    """x · σ(alpha · x) (opset 24)."""
    alpha = ctx.attr("alpha", 1.0)
    return _same(x, x / (1.0 + np.exp(-alpha * x)))


@register()
def Tan(ctx: NodeContext, x):
    """tan x."""
    return np.tan(x)


@register()
def Asin(ctx: NodeContext, x):
    """arcsin x."""
    return np.arcsin(x)


@register()
def Acos(ctx: NodeContext, x):
    """arccos x."""
    return np.arccos(x)


@register()
def Sinh(ctx: NodeContext, x):
    """sinh x."""
    return np.sinh(x)


@register()
def Cosh(ctx: NodeContext, x):
    """cosh x."""
    return np.cosh(x)


@register()
def Asinh(ctx: NodeContext, x):
    """arsinh x."""
    return np.arcsinh(x)


@register()
def Acosh(ctx: NodeContext, x):
    """arcosh x."""
    return np.arccosh(x)


@register()
def Atanh(ctx: NodeContext, x):
    """artanh x."""
    return np.arctanh(x)


@register()
def Softsign(ctx: NodeContext, x):
    """x / (1 + |x|)."""
    return _same(x, x / (1 + np.abs(x)))


@register()
def ThresholdedRelu(ctx: NodeContext, x):
    """x if x > alpha else 0."""
    return _same(x, np.where(x > ctx.attr("alpha", 1.0), x, 0))


@register()
def Celu(ctx: NodeContext, x):
    """max(0, x) + min(0, alpha · (e^{x/alpha} − 1))."""
    alpha = ctx.attr("alpha", 1.0)
    return _same(x, np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(np.minimum(x, 0) / alpha)))


@register()
def CastLike(ctx: NodeContext, x, like):
    """x converted to ``like``'s dtype (float → int truncates toward zero, as C)."""
    dtype = np.asarray(like).dtype
    return np.asarray(x) != 0 if dtype == np.bool_ else np.asarray(x).astype(dtype)


@register()
def BitShift(ctx: NodeContext, x, y):
    """x << y or x >> y (``direction`` LEFT / RIGHT) on unsigned integers."""
    if ctx.attr("direction") == "LEFT":
        return np.left_shift(x, y).astype(x.dtype)
    return np.right_shift(x, y).astype(x.dtype)


@register()
def BitwiseAnd(ctx: NodeContext, a, b):
    """a & b."""
    return np.bitwise_and(a, b)


@register()
def BitwiseOr(ctx: NodeContext, a, b):
    """a | b."""
    return np.bitwise_or(a, b)


@register()
def BitwiseXor(ctx: NodeContext, a, b):
    """a ^ b."""
    return np.bitwise_xor(a, b)


@register()
def BitwiseNot(ctx: NodeContext, x):
    """~x."""
    return np.bitwise_not(x)
