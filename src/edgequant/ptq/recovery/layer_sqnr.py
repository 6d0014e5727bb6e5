"""Per-layer SQNR before / after recovery, for ``report["recovery"]["layers"]``.

Two numbers per static-quantized Conv / Gemm / MatMul, both in dB (higher is closer):

- ``weight_sqnr_db`` — ``Σw² / Σ(w − ŵ)²`` of the weight tensor;
- ``output_sqnr_db`` — the layer's float output power over the power of the error that
  weight rounding alone causes (float inputs, float activations), from :mod:`error_stats`.

Each is a list of stages: ``[rtn]``, then ``+cle`` / ``+weight_clip`` (equalized weights,
searched weight ranges) and ``+bias_correction`` (the per-channel mean shift removed) when those ran.
"""

from __future__ import annotations

import math

from edgequant.ptq.recovery.error_stats import LayerError


def _r(v: float) -> float | None:
    return round(v, 2) if math.isfinite(v) else None  # None: exact (no error) or unmeasured


def sqnr_table(before: list[LayerError], after: list[LayerError], corrected: bool,
               changed: str = "+cle") -> list[dict]:
    """One row per layer: node, op_type, ``stages`` and the two SQNR lists (same order);
    ``changed`` names the stage that made ``after`` differ from ``before``."""
    rows = []
    done = {a.node: a for a in after}
    for b in before:
        stages, wsq, osq = ["rtn"], [b.weight_sqnr_db()], [b.output_sqnr_db()]
        a = done.get(b.node)
        if a is not None and a is not b:
            stages.append(changed)
            wsq.append(a.weight_sqnr_db())
            osq.append(a.output_sqnr_db())
        if corrected and a is not None:
            stages.append("+bias_correction")
            wsq.append(wsq[-1])
            osq.append(a.output_sqnr_db(corrected=True))
        rows.append({"node": b.node, "op_type": b.op_type, "stages": stages,
                     "weight_sqnr_db": [_r(v) for v in wsq],
                     "output_sqnr_db": [_r(v) for v in osq]})
    return rows
