"""``--workers 2`` on Ray gives exactly the serial results; without Ray, one clear line."""

from __future__ import annotations

import sys

import pytest
from sensitivity_models import splits

from edgequant.analysis.layers import find_layers, only_layer
from edgequant.analysis.sensitivity import make_evaluator
from edgequant.analysis.sweep import RayMissingError, run_sweep
from edgequant.recipes import get_recipe


@pytest.fixture(scope="module")
def jobs(planted):
    s = splits()
    ev = make_evaluator(planted, {"x": s["cal"]}, {"x": s["data"][:128]})
    base = get_recipe("w8a8")
    recipes = [only_layer(base, la) for la in find_layers(ev.float_model, base)] + [base]
    return ev, recipes


def test_ray_two_workers_match_serial(jobs):
    ray = pytest.importorskip("ray")
    ev, recipes = jobs
    serial = run_sweep(ev, recipes, workers=1)
    parallel = run_sweep(ev, recipes, workers=2)
    assert [e.to_dict() for e in parallel] == [e.to_dict() for e in serial]
    assert serial[-1].drop > 50  # the planted model: the numbers are not trivially equal
    assert not ray.is_initialized()  # the local cluster we started is shut down


def test_missing_ray_names_the_extra(jobs, monkeypatch):
    ev, recipes = jobs
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(RayMissingError, match=r"pip install edgequant\[ray\]"):
        run_sweep(ev, recipes, workers=2)
