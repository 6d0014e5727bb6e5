"""Streaming range estimators (observers) and ``make_observer(spec)``.

| name             | state                   | range                                             |
|------------------|-------------------------|---------------------------------------------------|
| `minmax`         | running min/max         | exact min/max (any granularity)                   |
| `moving_average` | averaged min/max        | EMA of per-batch min/max, ``momentum`` (any gran.) |
| `percentile`     | fixed-bin histogram     | ``percentile`` of abs(x) (symmetric) or both tails |
| `entropy`        | fixed-bin histogram     | min KL divergence window (TensorRT)               |
| `mse`            | fixed-bin histogram     | min expected quantize→dequantize squared error    |

Histogram observers are PerTensor only. ``spec.observer_args`` are passed as keyword
arguments (``momentum``, ``percentile``, ``bins``, ``candidates``).
"""

from __future__ import annotations

import inspect

from edgequant.observers.base import Observer
from edgequant.observers.entropy import EntropyObserver
from edgequant.observers.histogram import Histogram, HistogramObserver
from edgequant.observers.minmax import MinMaxObserver
from edgequant.observers.moving_average import MovingAverageObserver
from edgequant.observers.mse import MSEObserver
from edgequant.observers.percentile import PercentileObserver
from edgequant.spec import QuantSpec

OBSERVERS: dict[str, type] = {
    cls.name: cls
    for cls in (
        MinMaxObserver, MovingAverageObserver, PercentileObserver, EntropyObserver, MSEObserver
    )
}

#: Arguments that must be integers (observer_args values arrive as floats).
_INT_ARGS = frozenset({"bins", "candidates"})


def make_observer(spec: QuantSpec, tensor: str = "<tensor>") -> Observer:
    """Build the observer named by ``spec.observer`` with ``spec.observer_args``."""
    cls = OBSERVERS.get(spec.observer)
    if cls is None:
        raise ValueError(
            f"observer {spec.observer!r} for tensor {tensor!r} is not known: use one of "
            f"{', '.join(sorted(OBSERVERS))}"
        )
    args = dict(spec.observer_args)
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in
               ("self", "spec", "tensor")]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(
            f"observer {spec.observer!r} for tensor {tensor!r} got unknown argument(s) "
            f"{unknown}: allowed are {allowed}"
        )
    for key in _INT_ARGS & set(args):
        value = args[key]
        if float(value) != int(value):
            raise ValueError(
                f"observer {spec.observer!r} for tensor {tensor!r}: {key}={value!r} is not "
                "allowed: use an integer"
            )
        args[key] = int(value)
    return cls(spec, tensor, **args)


__all__ = [
    "OBSERVERS",
    "EntropyObserver",
    "Histogram",
    "HistogramObserver",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageObserver",
    "Observer",
    "PercentileObserver",
    "make_observer",
]
