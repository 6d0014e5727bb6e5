"""com.microsoft MatMulNBits: blockwise 4/8-bit weights, as onnxruntime's CPU kernel computes.

``accuracy_level=4`` (what onnxruntime's DequantizeLinear→MatMul fusion uses by default)
quantizes each row of A per block of ``block_size`` along K to int8 (symmetric,
``scale = max|a| / 127``), takes exact integer dot products with the centred weight codes, and
accumulates ``s_a · s_w · dot`` in float32. The integer part is exact; the float32 accumulation
order inside MLAS's SIMD kernel is not reproduced, so results agree to float rounding (a few
ulp), not bit for bit. Other accuracy levels dequantize the weights and use a float32 GEMM.
"""

from __future__ import annotations

import numpy as np

from edgequant.interp.integers import exact_matmul, flat_matmul
from edgequant.interp.registry import MS_DOMAIN, NodeContext, register

INT8_ACCURACY_LEVEL = 4


def unpack_codes(packed: np.ndarray, bits: int, n: int, blocks: int, block: int) -> np.ndarray:
    """(N, blocks, blob) uint8 → (N, blocks·block) unsigned codes (low nibble first)."""
    raw = np.asarray(packed, dtype=np.uint8).reshape(n, -1)
    if bits == 8:
        return raw[:, : blocks * block].astype(np.int32)
    codes = np.empty((n, raw.shape[1] * 2), dtype=np.int32)
    codes[:, 0::2] = raw & 0x0F
    codes[:, 1::2] = raw >> 4
    return codes[:, : blocks * block]


def _zero_points(zp, bits: int, n: int, blocks: int) -> np.ndarray:
    """(N, blocks) zero points: packed uint8 codes, or the midpoint 2^(bits−1) when absent."""
    if zp is None:
        return np.full((n, blocks), 1 << (bits - 1), dtype=np.int32)
    if np.asarray(zp).dtype.kind == "f":
        raise TypeError("MatMulNBits with float zero points is not supported")
    return unpack_codes(zp, bits, n, blocks, 1).reshape(n, -1)[:, :blocks] if bits == 4 else \
        np.asarray(zp, dtype=np.int32).reshape(n, blocks)


@register(MS_DOMAIN)
def MatMulNBits(ctx: NodeContext, A, B, scales, zero_points=None, g_idx=None, bias=None):
    """Y = A @ dequant(B)ᵀ (+ bias) with B (N, K) in blocks of ``block_size`` along K."""
    k, n = int(ctx.attr("K")), int(ctx.attr("N"))
    bits, block = int(ctx.attr("bits", 4)), int(ctx.attr("block_size"))
    blocks = -(-k // block)
    codes = unpack_codes(B, bits, n, blocks, block)  # (N, blocks·block) int32
    wq = (codes.reshape(n, blocks, block)
          - _zero_points(zero_points, bits, n, blocks)[:, :, None])  # (N, blocks, block) int32
    ws = np.asarray(scales, dtype=np.float32).reshape(n, blocks)
    a = np.asarray(A, dtype=np.float32)
    lead = a.shape[:-1]
    rows = a.reshape(-1, k)  # (M, K)
    if int(ctx.attr("accuracy_level", 0)) == INT8_ACCURACY_LEVEL:
        padded = np.zeros((rows.shape[0], blocks * block), dtype=np.float32)
        padded[:, :k] = rows
        ab = padded.reshape(-1, blocks, block)  # (M, blocks, block)
        sa = (np.abs(ab).max(axis=2) / np.float32(127)).astype(np.float32)  # (M, blocks)
        inv = np.where(sa > 0, np.float32(1) / np.where(sa > 0, sa, 1), 0).astype(np.float32)
        qa = np.rint(ab * inv[:, :, None]).astype(np.int32)  # int8 codes (M, blocks, block)
        y = np.zeros((rows.shape[0], n), dtype=np.float32)
        for b in range(blocks):  # float32 accumulation of exact integer block products
            dots = exact_matmul(qa[:, b], wq[:, b].T)  # (M, N) int64, |dot| < 2^53
            y = (y + (sa[:, b, None] * ws[None, :, b]) * dots.astype(np.float32)).astype(
                np.float32)
    else:
        w = (wq.astype(np.float32) * ws[:, :, None]).reshape(n, -1)[:, :k]  # (N, K) float32
        y = flat_matmul(rows, w.T).astype(np.float32)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float32)
    return y.reshape(*lead, n)
