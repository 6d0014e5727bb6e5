"""Latency measurement that treats every model alike.

Rounds alternate between models (A B C A B C ...) instead of timing A fully, then B: slow
drifts on a shared machine (other processes, thermal throttling, frequency scaling) then hit
all models equally, and the median of each model's rounds discards the spikes.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def measure_interleaved(
    runners: Mapping[str, Callable[[], object]], repeats: int = 20, warmup: int = 3
) -> dict[str, float]:
    """Median wall time in milliseconds of each zero-argument callable.

    ``warmup`` untimed interleaved rounds run first (allocations, caches, lazy init).
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} is not allowed: use an integer >= 1")
    if warmup < 0:
        raise ValueError(f"warmup={warmup} is not allowed: use an integer >= 0")
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            t0 = time.perf_counter()
            runners[name]()
            times[name].append((time.perf_counter() - t0) * 1e3)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    log.debug("latency medians (ms): %s", medians)
    return medians
