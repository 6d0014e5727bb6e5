"""Element-wise ops (numpy broadcasting). Float ops compute in the input's float type."""

from __future__ import annotations

import numpy as np
from onnx import helper
from scipy.special import erf as _erf

from edgequant.interp.registry import NodeContext, register


def _same(x: np.ndarray, y) -> np.ndarray:
    """Result cast back to ``x``'s dtype (numpy promotes float32 · python float to float64)."""
    return np.asarray(y).astype(np.asarray(x).dtype, copy=False)


@register()
def Add(ctx: NodeContext, a, b):
    """a + b."""
    return _same(a, np.add(a, b))


@register()
def Sub(ctx: NodeContext, a, b):
    """a − b."""
    return _same(a, np.subtract(a, b))


@register()
def Mul(ctx: NodeContext, a, b):
    """a · b."""
    return _same(a, np.multiply(a, b))


@register()
def Div(ctx: NodeContext, a, b):
    """a / b; integer division truncates toward zero (C semantics, as onnxruntime)."""
    if np.asarray(a).dtype.kind in "iu":
        q = np.abs(a) // np.abs(b)
        return _same(a, np.where((np.asarray(a) < 0) ^ (np.asarray(b) < 0), -q, q))
    return _same(a, np.divide(a, b))


@register()
def Pow(ctx: NodeContext, x, y):
    """x ** y."""
    return _same(x, np.power(x, np.asarray(y).astype(x.dtype)))


@register()
def Max(ctx: NodeContext, *xs):
    """Element-wise maximum of all inputs."""
    out = xs[0]
    for x in xs[1:]:
        out = np.maximum(out, x)
    return _same(xs[0], out)


@register()
def Min(ctx: NodeContext, *xs):
    """Element-wise minimum of all inputs."""
    out = xs[0]
    for x in xs[1:]:
        out = np.minimum(out, x)
    return _same(xs[0], out)


@register()
def Abs(ctx: NodeContext, x):
    """|x|."""
    return np.abs(x)


@register()
def Neg(ctx: NodeContext, x):
    """−x."""
    return np.negative(x)


@register()
def Sqrt(ctx: NodeContext, x):
    """√x."""
    return np.sqrt(x)


@register()
def Exp(ctx: NodeContext, x):
    """eˣ."""
    return np.exp(x)


@register()
def Round(ctx: NodeContext, x):
    """Round half to even."""
    return np.rint(x)


@register()
def Erf(ctx: NodeContext, x):
    """Gauss error function."""
    return _same(x, _erf(x))


@register()
def Tanh(ctx: NodeContext, x):
    """tanh x."""
    return np.tanh(x)


@register()
def Sigmoid(ctx: NodeContext, x):
    """1 / (1 + e^−x)."""
    return _same(x, 1.0 / (1.0 + np.exp(-x)))


@register()
def Relu(ctx: NodeContext, x):
    """max(x, 0) (also for integer tensors)."""
    return np.maximum(x, np.zeros((), dtype=x.dtype))


@register()
def LeakyRelu(ctx: NodeContext, x):
    """x if x ≥ 0 else alpha · x."""
    alpha = np.asarray(ctx.attr("alpha", 0.01), dtype=x.dtype)
    return np.where(x >= 0, x, x * alpha).astype(x.dtype)


@register()
def HardSigmoid(ctx: NodeContext, x):
    """clip(alpha · x + beta, 0, 1)."""
    alpha = np.asarray(ctx.attr("alpha", 0.2), dtype=x.dtype)
    beta = np.asarray(ctx.attr("beta", 0.5), dtype=x.dtype)
    return np.clip(alpha * x + beta, 0, 1).astype(x.dtype)


@register()
def HardSwish(ctx: NodeContext, x):
    """x · clip(x / 6 + 1/2, 0, 1)."""
    alpha = np.asarray(1.0 / 6.0, dtype=x.dtype)
    return (x * np.clip(alpha * x + np.asarray(0.5, x.dtype), 0, 1)).astype(x.dtype)


@register()
def Clip(ctx: NodeContext, x, lo=None, hi=None):
    """clip(x, min, max); bounds from inputs (opset ≥ 11) or attributes (older)."""
    lo = ctx.attr("min") if lo is None else lo
    hi = ctx.attr("max") if hi is None else hi
    out = x
    if lo is not None:
        out = np.maximum(out, np.asarray(lo).astype(x.dtype))
    if hi is not None:
        out = np.minimum(out, np.asarray(hi).astype(x.dtype))
    return out.astype(x.dtype)


@register()
def Gelu(ctx: NodeContext, x):
    """x · Φ(x) (``approximate="none"``) or the tanh approximation."""
    if ctx.attr("approximate", "none") == "tanh":
        inner = np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)
        return _same(x, 0.5 * x * (1.0 + np.tanh(inner)))
    return _same(x, 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))))


@register()
def Equal(ctx: NodeContext, a, b):
    """a == b (bool)."""
    return np.equal(a, b)


@register()
def Less(ctx: NodeContext, a, b):
    """a < b (bool)."""
    return np.less(a, b)


@register()
def Greater(ctx: NodeContext, a, b):
    """a > b (bool)."""
    return np.greater(a, b)


@register()
def Not(ctx: NodeContext, x):
    """Logical not."""
    return np.logical_not(x)


@register()
def Where(ctx: NodeContext, cond, x, y):
    """cond ? x : y."""
    return np.where(cond, x, y).astype(np.result_type(x, y))


@register()
def Cast(ctx: NodeContext, x):
    """Convert to the ``to`` type (float → int truncates toward zero, as C)."""
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(int(ctx.attr("to"))))
    if dtype == np.bool_:
        return np.asarray(x) != 0
    return np.asarray(x).astype(dtype)


@register()
def Identity(ctx: NodeContext, x):
    """x."""
    return x


@register()
def GreaterOrEqual(ctx: NodeContext, a, b):
    """a >= b (bool)."""
    return np.greater_equal(a, b)


@register()
def LessOrEqual(ctx: NodeContext, a, b):
    """a <= b (bool)."""
    return np.less_equal(a, b)


@register()
def And(ctx: NodeContext, a, b):
    """Logical and."""
    return np.logical_and(a, b)


@register()
def Or(ctx: NodeContext, a, b):
    """Logical or."""
    return np.logical_or(a, b)
