"""Integer activation kernels of the reference executor: LiteRT's int8 LOGISTIC / TANH
(float LUT), SOFTMAX (float exp LUT, x86 path) and HARD_SWISH (int16 fixed point)."""

from __future__ import annotations

import numpy as np

from edgequant.fixedpoint import quantize_multiplier
from edgequant.interp.tflite.kernels import tfl_round


def lut_activation(x, xq, yq, fn: str, dtype=np.int8):
    """int8 LOGISTIC / TANH / GELU (``fn`` ``gelu`` or ``gelu_tanh``) as LiteRT's kernels:
    a 256-entry LUT of the float32 function (``LUTPopulateInt8``)."""
    _int8_only(dtype, fn)
    info = np.iinfo(dtype)
    vals = np.arange(info.min, info.max + 1)
    deq = (np.float32(xq[0][0]) * (vals - int(xq[1][0])).astype(np.float32)).astype(np.float32)
    if fn == "logistic":
        e = np.exp(-deq.astype(np.float64)).astype(np.float32)  # expf, correctly rounded
        t = (np.float32(1) / (np.float32(1) + e)).astype(np.float32)
    elif fn in ("gelu", "gelu_tanh"):
        t = gelu_float32(deq, fn == "gelu_tanh")
    else:
        t = np.tanh(deq.astype(np.float64)).astype(np.float32)
    inv = np.float32(1) / np.float32(yq[0][0])
    q = tfl_round((t * inv).astype(np.float32)) + int(yq[1][0])
    table = np.clip(q, info.min, info.max)
    return table[x.astype(np.int64) - info.min].astype(dtype)


def gelu_float32(x: np.ndarray, approximate: bool) -> np.ndarray:
    """LiteRT's ``GeluTransform`` / ``GeluTransformApproximate`` step by step in float32
    (``erfcf`` / ``tanhf`` taken as the correctly rounded float64 value)."""
    import math

    f = np.float32
    x = np.asarray(x, np.float32)
    half_x = (f(0.5) * x).astype(np.float32)
    if not approximate:  # 0.5f · x · erfc(x · −1/√2)
        arg = (x * f(-math.sqrt(0.5))).astype(np.float32)
        erfc = np.vectorize(math.erfc, otypes=[np.float64])(arg).astype(np.float32)
        return (half_x * erfc).astype(np.float32)
    cube = ((f(0.044715) * x).astype(np.float32) * x).astype(np.float32)
    cube = (cube * x).astype(np.float32)  # 0.044715f · x · x · x, left to right
    inner = (f(2 / math.sqrt(math.pi) * math.sqrt(0.5)) * (x + cube).astype(np.float32))
    t = np.tanh(inner.astype(np.float32).astype(np.float64)).astype(np.float32)
    return (half_x * (f(1) + t).astype(np.float32)).astype(np.float32)


def _int8_only(dtype, what: str) -> None:
    if np.dtype(dtype) != np.int8:
        from edgequant.errors import UnsupportedOpError

        raise UnsupportedOpError(f"reference executor: {np.dtype(dtype)} {what} is not modelled "
                                 "(int8 only; LiteRT's int16 kernels use other LUTs)")


def softmax(x, xq, yq, beta: float = 1.0, dtype=np.int8):
    """int8 SOFTMAX as LiteRT's optimized kernel (x86): float32 exp LUT, float32 sums."""
    if np.dtype(dtype) == np.int16:
        return softmax_int16(x, xq, beta)
    _int8_only(dtype, "softmax")
    scale = np.float32(-np.float32(xq[0][0]) * np.float32(beta))
    table = np.exp((scale * np.arange(256, dtype=np.float32)).astype(np.float64))
    table = table.astype(np.float32)[::-1]  # table[255 − v] = expf(scale · v)
    xi = x.astype(np.int64)
    mx = xi.max(axis=-1, keepdims=True)
    e = table[255 - mx + xi]  # (…, K) float32
    s = np.zeros(e.shape[:-1], np.float32)
    for j in range(e.shape[-1]):  # sequential float32 sum, as the kernel's loop
        s = (s + e[..., j]).astype(np.float32)
    inv = (np.float32(1) / (s * np.float32(yq[0][0])).astype(np.float32)).astype(np.float32)
    prob = (e * inv[..., None]).astype(np.float32)
    q = tfl_round(prob) + int(yq[1][0])
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def _srdhm16(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16."""
    a = np.asarray(a, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    num = ab + nudge
    q = np.where(num >= 0, num >> 15, -((-num) >> 15))  # C++ division truncates
    return np.where((a == -32768) & (b == -32768), 32767, q)


def _sdhm16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``SaturatingDoublingHighMul`` on int16: (a·b) / 2^15 truncated toward zero."""
    ab = np.asarray(a, np.int64) * np.asarray(b, np.int64)
    q = np.where(ab >= 0, ab >> 15, -((-ab) >> 15))
    return np.where((a == -32768) & (b == -32768), 32767, q)


def _rdbp(x: np.ndarray, e: int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT`` (ties away from zero)."""
    x = np.asarray(x, np.int64)
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + np.where(x < 0, 1, 0)
    return (x >> e) + np.where(rem > thr, 1, 0)


def _int16_multiplier(real: float) -> tuple[int, int]:
    m, e = quantize_multiplier(real)
    m16 = 32767 if m >= 2**31 - 1 - (1 << 15) else (m + (1 << 15)) >> 16
    return m16, e


def hard_swish(x, xq, yq, dtype=np.int8):
    """int8 HARD_SWISH as TFLite's reference kernel (int16 fixed point, ``HardSwishPrepare``
    multipliers from float32 scales)."""
    _int8_only(dtype, "hard_swish")
    si, so = np.float32(xq[0][0]), np.float32(yq[0][0])
    hires = np.float32(np.float32(1 / 128) * si)
    out_m, out_e = _int16_multiplier(float(np.float32(hires / so)))
    relu_m, relu_e = _int16_multiplier(float(np.float32(hires / np.float32(3 / 32768))))
    v = x.astype(np.int64) - int(xq[1][0])
    hv = np.clip(v * 128, -32768, 32767)  # int16 (|v| ≤ 255 · 128 fits)
    pre_out = _srdhm16(hv, out_m)
    r = hv
    if relu_e > 0:
        r = np.clip(r * (1 << (relu_e - 1)), -32768, 32767)
    r = _srdhm16(r, relu_m)
    if relu_e > 0:
        r = np.clip(r * 2, -32768, 32767)
    if relu_e < 0:
        r = _rdbp(r, -relu_e)
    r = (r + (1 << 15)) >> 1
    y = _rdbp(_sdhm16(r, pre_out), -out_e) + int(yq[1][0])
    info = np.iinfo(dtype)
    return np.clip(y, info.min, info.max).astype(dtype)


def _gen_lut(func, lo: float, hi: float) -> np.ndarray:
    """TFLite ``gen_lut<double, int16_t, int16_t>`` over [lo, hi] onto [−1, 1]: 512 steps
    with midpoint-error bias, plus one extra value for interpolation (513 entries)."""
    steps = 512
    step = (hi - lo) / steps
    inv = 65536.0 / 2.0  # (int16 max − min + 1) / (output_max − output_min)
    lut = np.empty(steps + 1, np.int64)
    for i in range(steps):
        val = func(lo + i * step)
        mid = func(lo + i * step + step / 2)
        nxt = func(lo + (i + 1) * step)
        sample = float(tfl_round(np.float64(val * inv)))
        interp = float(tfl_round(np.float64((nxt * inv + sample) / 2)))
        err = interp - float(tfl_round(np.float64(mid * inv)))
        bias = float(tfl_round(np.float64(err / 2)))
        lut[i] = int(min(max(sample - bias, -32768.0), 32767.0))
    lut[steps] = int(min(max(float(tfl_round(np.float64(func(hi) * inv))), -32768.0), 32767.0))
    return lut


def _lut_lookup(v: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """TFLite ``LUTLookup`` for int16 inputs: base + interpolated slope (Q0.7 offset)."""
    v = np.asarray(v, np.int64)
    idx = 256 + (v >> 7)
    off = v & 0x7F
    base, slope = lut[idx], lut[idx + 1] - lut[idx]
    return base + ((slope * off + 64) >> 7)


def softmax_int16(x, xq, beta: float = 1.0) -> np.ndarray:
    """int16 SOFTMAX as TFLite's ``SoftmaxInt16`` (exp and 1/(1+x) LUTs, Q0.15 output)."""
    import math

    from edgequant.fixedpoint import requantize

    exp_lut = _gen_lut(math.exp, -10.0, 0.0)
    inv_lut = _gen_lut(lambda v: 1.0 / (1.0 + v), 0.0, 1.0)
    m, s = quantize_multiplier(float(xq[0][0]) * float(beta) / (10.0 / 65535.0))
    xi = x.astype(np.int64)
    diff = xi - xi.max(axis=-1, keepdims=True)
    scaled = requantize(diff, m, s) + 32767
    e = _lut_lookup(np.clip(scaled, -32768, 32767), exp_lut)  # (…, K) Q0.15
    total = e.sum(axis=-1, keepdims=True)  # int32
    out = np.empty_like(e)
    for idx in np.ndindex(total.shape):  # per row: reciprocal of the sum through the LUT
        t = int(total[idx])
        hr = 32 - t.bit_length()  # CountLeadingZeros(uint32)
        shifted = ((t << (hr - 1)) + (1 << 13)) >> 14
        sym = min(max(shifted - ((1 << 15) + (1 << 16)), -32768), 32767)
        recip = int(_lut_lookup(np.array(sym), inv_lut))
        rs = 31 - hr
        row = e[idx[:-1]] if len(idx) > 1 else e
        res = (row.astype(np.int64) * recip + (1 << (rs - 1))) >> rs
        out[idx[:-1]] = np.clip(res, 0, 32767)
    return out.astype(np.int16)
