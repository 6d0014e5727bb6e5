"""Auxiliary steps (the speed check, report extras) never fail the main command.

``run_auxiliary`` runs one step and turns any exception it raises — onnxruntime errors on a
corrupted-but-loadable model, ``MemoryError``, numpy errors — into one entry of
``report["warnings"]``. ``timing_input_mib`` is the size check done *before* a timing run
allocates its inputs: a model whose batch-1 inputs need more than ``MAX_TIMING_INPUT_MIB`` is
not timed (a ``10^7`` dim would otherwise ask for tens of GiB).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import onnx

log = logging.getLogger(__name__)

#: Inputs larger than this (MiB, batch 1, symbolic dims as 1) are not timed.
MAX_TIMING_INPUT_MIB = 256


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def timing_input_mib(model: onnx.ModelProto) -> float:
    """MiB of one batch-1 input set of ``model`` (symbolic dims counted as 1), from the
    declared shapes only: nothing is allocated."""
    from edgequant.runtime.feeds import model_inputs

    total = 0
    for spec in model_inputs(model):
        count = math.prod(d if d else 1 for d in spec.shape)
        total += count * spec.dtype.itemsize
    return total / 2**20


def run_auxiliary(step: str, report: dict[str, Any], fn: Callable[[], None]) -> bool:
    """Run ``fn``; on any ``Exception`` add ``"<step> skipped: <reason>"`` to
    ``report["warnings"]`` and return False (``KeyboardInterrupt`` still stops the run)."""
    try:
        fn()
    except Exception as exc:  # deliberately broad: an auxiliary step must not fail the command
        msg = f"{step} skipped: {type(exc).__name__}: {_first_line(exc)}"
        log.warning("%s", msg)
        report.setdefault("warnings", []).append(msg)
        return False
    return True


def guarded_speed_check(float_model: onnx.ModelProto, report: dict[str, Any],
                        check: Callable[[], None], max_mib: float = MAX_TIMING_INPUT_MIB) -> bool:
    """Run the speed check ``check`` unless the model's inputs exceed ``max_mib``; never raise."""
    def _run() -> None:
        mib = timing_input_mib(float_model)
        if mib > max_mib:
            raise MemoryError(f"its inputs need {mib:,.0f} MiB at batch 1 (limit {max_mib:,.0f} MiB)")
        check()

    ok = run_auxiliary("speed check", report, _run)
    if not ok:
        report["speedup_vs_float"] = None
    return ok
