"""Integer helpers shared by the integer ops: dtypes, saturation and the exact integer GEMM."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from edgequant.spec import QType

#: float64 holds every integer of magnitude below 2^53 exactly, so an int8·int8 (or int16)
#: dot product computed by float64 BLAS is exact while |partial sums| stay under this bound.
FLOAT64_EXACT_BOUND = 2**53

_SUBBYTE = {
    np.dtype(ml_dtypes.int4): QType(4, True),
    np.dtype(ml_dtypes.uint4): QType(4, False),
}


def qtype_of(dtype: np.dtype) -> QType:
    """The :class:`QType` an integer numpy dtype stores (int4/uint4 via ml_dtypes)."""
    dtype = np.dtype(dtype)
    if dtype in _SUBBYTE:
        return _SUBBYTE[dtype]
    if dtype.kind not in "iu":
        raise TypeError(f"dtype {dtype} is not an integer type: quantized tensors must be int")
    return QType(dtype.itemsize * 8, dtype.kind == "i")


def container_dtype(qtype: QType) -> np.dtype:
    """numpy dtype a value of ``qtype`` is returned in (int4 → ml_dtypes.int4)."""
    if qtype.container_bits == 4:
        return np.dtype(ml_dtypes.int4 if qtype.signed else ml_dtypes.uint4)
    return np.dtype(f"{'int' if qtype.signed else 'uint'}{qtype.container_bits}")


def as_int(x: np.ndarray) -> np.ndarray:
    """Integer array in a plain numpy dtype (int4/uint4 unpacked to int8/uint8)."""
    x = np.asarray(x)
    if x.dtype in _SUBBYTE:
        return x.astype(np.int8 if _SUBBYTE[x.dtype].signed else np.uint8)
    return x


def saturate(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clip integer (or integral float) values into ``dtype``'s range and cast."""
    qt = qtype_of(dtype)
    return np.clip(v, qt.qmin, qt.qmax).astype(container_dtype(qt))


def centered(q: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """``q − zero_point`` as int32 (exact for every integer type up to 16 bits)."""
    q = as_int(q).astype(np.int32)
    if zero_point is None:
        return q
    return q - as_int(zero_point).astype(np.int32)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer ``a @ b`` (numpy broadcasting) computed by float64 BLAS, returned as int64.

    Exact because every product and partial sum is an integer below 2^53: asserted from the
    operands' largest magnitudes and the reduction length.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    k = a.shape[-1]
    amax = int(np.abs(a.astype(np.int64)).max()) if a.size else 0
    bmax = int(np.abs(b.astype(np.int64)).max()) if b.size else 0
    assert amax * bmax * max(k, 1) < FLOAT64_EXACT_BOUND, "integer GEMM would not be exact"
    out = flat_matmul(a.astype(np.float64), b.astype(np.float64))  # exact integer values
    return out.astype(np.int64)


def flat_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.matmul`` that folds ``a``'s leading dims into rows when ``b`` is 2-D.

    One (B·M, K) @ (K, N) BLAS call instead of B small ones: same values, several times faster.
    """
    if b.ndim == 2 and a.ndim > 2:
        return np.matmul(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])
    return np.matmul(a, b)


def to_int32(acc: np.ndarray) -> np.ndarray:
    """int64 accumulator → int32 with two's-complement wrap, as a C int32 accumulator."""
    return np.asarray(acc, dtype=np.int64).astype(np.int32)
