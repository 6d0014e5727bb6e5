"""com.microsoft DynamicQuantizeLSTM as onnxruntime's CPU kernel computes it.

Weights are int8 (or uint8) with per-tensor or per-column scales, stored transposed:
W (D, I, 4·H), R (D, H, 4·H); W_scale / W_zero_point of shape (D,) or (D, 4·H). Each GEMM
quantizes its float operand at run time, per tensor, the way ``GetQuantizationParameter``
(onnxruntime ``core/util/qmath.h``) does — the range widened to include 0, uint8,
``scale = (max − min) / 255``, ``zp = round_half_even(clamp(−min / scale, 0, 255))`` — once
for the whole sequence X (T·N rows) and once per step for the previous hidden state; the
int32 accumulator is scaled by ``a_scale · w_scale[column]`` (float32). The gates then run in
float as in :func:`edgequant.interp.ops.rnn.LSTM`.
"""

from __future__ import annotations

import numpy as np

from edgequant.interp.integers import as_int
from edgequant.interp.ops.rnn import lstm_cell, run_recurrent
from edgequant.interp.registry import MS_DOMAIN, NodeContext, register

f32 = np.float32


def dynamic_uint8(a: np.ndarray) -> tuple[np.ndarray, f32, int]:
    """(a_q uint8, scale, zero point) of onnxruntime's run-time per-tensor quantization."""
    lo, hi = min(f32(a.min()), f32(0)), max(f32(a.max()), f32(0))
    scale = f32(1) if hi == lo else f32((hi - lo) / f32(255))
    zp = int(np.round(np.clip(f32(0) - lo / scale, f32(0), f32(255))))  # half to even
    q = np.clip(np.round(a / scale) + zp, 0, 255).astype(np.int64)  # (…, K) on the uint8 grid
    return q, scale, zp


def quantized_gemm(a: np.ndarray, wq: np.ndarray, w_scale: np.ndarray, w_zp: np.ndarray
                   ) -> np.ndarray:
    """``a (M, K) float32 @ dequantized wq (K, N)`` the way the kernel does it."""
    q, scale, zp = dynamic_uint8(a)
    acc = (q - zp).astype(np.float64) @ (wq.astype(np.float64) - w_zp)  # (M, N) exact int32
    mult = (scale * w_scale.astype(f32)).astype(f32)  # (N,) or ()
    return (acc.astype(f32) * mult).astype(f32)


@register(MS_DOMAIN)
def DynamicQuantizeLSTM(ctx: NodeContext, x, w, r, b=None, seq_lens=None, initial_h=None,
                        initial_c=None, p=None, w_scale=None, w_zero_point=None, r_scale=None,
                        r_zero_point=None):
    """LSTM with int8 weights and run-time quantized activations (outputs Y, Y_h, Y_c)."""
    if w_scale is None or r_scale is None:
        raise ValueError(f"DynamicQuantizeLSTM node {ctx.name!r}: W_scale and R_scale are required")
    n_dirs, hidden4 = w.shape[0], w.shape[2]

    def per_column(v):
        v = np.zeros(n_dirs, np.int64) if v is None else as_int(np.asarray(v))
        return v.reshape(n_dirs, -1)  # (D, 1) per tensor or (D, 4·H) per column

    ws, wz, rs, rz = (per_column(w_scale), per_column(w_zero_point), per_column(r_scale),
                      per_column(r_zero_point))

    def project(xs, d):
        t, n, k = xs.shape
        out = quantized_gemm(xs.reshape(t * n, k), w[d], ws[d], wz[d])  # (T·N, 4·H)
        return out.reshape(t, n, hidden4)

    def make_cell(d, _r_d, rb, hidden):
        return lstm_cell(x.dtype, p, d, hidden, rb,
                         lambda prev_h: quantized_gemm(prev_h, r[d], rs[d], rz[d]))

    # _run reads W and R in the ONNX LSTM layout (D, 4·H, ·) for shapes only
    return run_recurrent(ctx, x, np.swapaxes(w, 1, 2), np.swapaxes(r, 1, 2), b, seq_lens,
                [initial_h, initial_c], 4, make_cell, project=project)
