"""measure_interleaved: round order and medians, with a fake clock (no timing assertions)."""

from __future__ import annotations

import pytest

import edgequant.analysis.latency as latency


def test_rounds_alternate_and_medians_use_each_models_times(monkeypatch):
    clock = [0.0]
    calls: list[str] = []
    # per-call durations in seconds: the median of A is 2 ms, of B 10 ms (spikes discarded)
    durations = {"A": iter([0.0, 0.001, 0.050, 0.002, 0.002]),
                 "B": iter([0.0, 0.010, 0.010, 0.900, 0.011])}

    def make(name):
        def run():
            calls.append(name)
            clock[0] += next(durations[name])
        return run

    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])
    out = latency.measure_interleaved({"A": make("A"), "B": make("B")}, repeats=4, warmup=1)
    assert calls == ["A", "B"] * 5
    assert out["A"] == pytest.approx((2 + 2) / 2)  # sorted 1, 2, 2, 50 → median 2 ms
    assert out["B"] == pytest.approx((10 + 11) / 2)  # sorted 10, 10, 11, 900 → 10.5 ms


def test_bad_repeats():
    with pytest.raises(ValueError, match="repeats"):
        latency.measure_interleaved({"A": lambda: None}, repeats=0)
