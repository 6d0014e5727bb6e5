"""``edgequant analyze``: the ranking finds a planted sensitive layer, every sweep number equals
a direct ``edgequant.quantize`` + onnxruntime run, results come back from the cache without
re-evaluating, and ``nn.Module`` inputs go through the torch export path.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sensitivity_models import splits
from typer.testing import CliRunner

import edgequant as eq
import edgequant.analysis.sensitivity as sens_mod
from edgequant.analysis.evaluator import Evaluator
from edgequant.analysis.metrics import top1_agreement
from edgequant.analysis.sensitivity import analyze
from edgequant.recipes import Rule, get_recipe

#: The planted head ruins the model when quantized: drop far above any honest layer's.
PLANTED_MIN_DROP = 50.0
#: The honest layers of the digits CNN cost at most a few agreement points at int8.
HONEST_MAX_DROP = 5.0


def ort_first(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def report(planted):
    s = splits()
    return analyze(planted, {"x": s["cal"]}, {"x": s["data"]}, cache_dir=None,
                   sweeps=("single", "all_but_one", "int4"))


def test_ranking_recovers_the_planted_layer(report):
    first, *rest = report.layers
    assert first.node == "fc3" and first.rank == 1
    assert first.single_drop > PLANTED_MIN_DROP and first.gain > PLANTED_MIN_DROP
    assert first.suggestion == "keep float"  # its weights are the weak side
    assert first.weight_sqnr_db < 10 < first.activation_sqnr_db
    assert all(r.single_drop < HONEST_MAX_DROP and r.gain < HONEST_MAX_DROP for r in rest)
    assert report.base_drop > PLANTED_MIN_DROP
    assert report.base_bytes < report.float_bytes


def test_sweep_numbers_match_direct_quantize_and_onnxruntime(report, planted):
    """Oracle: ``eq.quantize`` with its own calibration, then onnxruntime, agreement by hand."""
    s = splits()
    ref = ort_first(planted, s["data"])
    for row in report.layers:
        only = get_recipe("w8a8").with_rules(Rule(action="float"), Rule(nodes=tuple(row.nodes)))
        but = get_recipe("w8a8").with_rules(Rule(nodes=tuple(row.nodes), action="float"))
        for recipe, expected in ((only, row.single_drop), (but, row.all_but_one_drop)):
            qm = eq.quantize(planted, recipe, {"x": s["cal"]})
            drop = 100 * (1 - top1_agreement(ref, ort_first(qm.model, s["data"])))
            assert drop == pytest.approx(expected, abs=1e-9), (row.node, recipe.rules[-1])


def test_second_run_reads_the_cache(planted, tmp_path, monkeypatch):
    s = splits()
    calls = {"evaluate": 0, "stats": 0}
    real_eval, real_stats = Evaluator.evaluate, sens_mod.layer_stats

    def counting_eval(self, recipe):
        calls["evaluate"] += 1
        return real_eval(self, recipe)

    def counting_stats(*a, **k):
        calls["stats"] += 1
        return real_stats(*a, **k)

    monkeypatch.setattr(Evaluator, "evaluate", counting_eval)
    monkeypatch.setattr(sens_mod, "layer_stats", counting_stats)
    first = analyze(planted, {"x": s["cal"]}, {"x": s["data"]}, cache_dir=tmp_path)
    assert calls == {"evaluate": 2 + 2 * 3, "stats": 1} and not first.cached
    second = analyze(planted, {"x": s["cal"]}, {"x": s["data"]}, cache_dir=tmp_path)
    assert calls == {"evaluate": 8, "stats": 1} and second.cached
    assert second.to_dict() == first.to_dict()
    # other data: a different key, evaluated again
    analyze(planted, {"x": s["cal"]}, {"x": s["check"]}, cache_dir=tmp_path)
    assert calls["evaluate"] == 16


@pytest.mark.slow  # a torch.onnx dynamo export: ~20 s on a loaded 2-core box
def test_module_input_goes_through_the_torch_export(monkeypatch):
    torch = pytest.importorskip("torch")
    import edgequant.torch.export as texport

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 10))
    exported = []
    real = texport.export_onnx
    monkeypatch.setattr(texport, "export_onnx", lambda *a, **k: exported.append(real(*a, **k))
                        or exported[-1])
    s = splits()
    rep = analyze(net, s["cal"], s["data"][:64], cache_dir=None)
    assert len(exported) == 1  # one export, then the ONNX analysis of exactly that model
    direct = analyze(exported[0], s["cal"], s["data"][:64], cache_dir=None)
    assert [r.op_type for r in rep.layers] != [] and len(rep.layers) == 2
    assert rep.to_dict() == direct.to_dict()


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "f1"}, "metric 'f1' is unknown"),
    ({"metric": "accuracy"}, "needs labels"),
    ({"sweeps": ("pairs",)}, "not allowed"),
    ({"workers": 0}, "--workers 0 is not allowed"),
    ({"recipe": "w8_dynamic"}, "static base recipe"),
])
def test_bad_arguments(planted, kwargs, message):
    s = splits()
    with pytest.raises(ValueError, match=message):
        analyze(planted, {"x": s["cal"]}, {"x": s["data"]}, cache_dir=None, **kwargs)


def test_cli_json(planted, tmp_path):
    from edgequant.cli import app

    s = splits()
    onnx.save(planted, tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=s["cal"])
    np.savez(tmp_path / "data.npz", x=s["data"])
    np.save(tmp_path / "labels.npy", s["labels"])
    res = CliRunner().invoke(app, ["analyze", str(tmp_path / "m.onnx"), "--calibration",
                                   str(tmp_path / "cal.npz"), "--data", str(tmp_path / "data.npz"),
                                   "--labels", str(tmp_path / "labels.npy"), "--metric",
                                   "accuracy", "--json", "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["metric"] == "accuracy" and d["layers"][0]["node"] == "fc3"
    assert {"rank", "single_drop", "gain", "weight_sqnr_db", "suggestion"} <= set(d["layers"][0])
    bad = CliRunner().invoke(app, ["analyze", str(tmp_path / "m.onnx"), "--calibration",
                                   str(tmp_path / "cal.npz"), "--data", str(tmp_path / "data.npz"),
                                   "--metric", "accuracy"])
    assert bad.exit_code == 2 and "needs labels" in bad.output
