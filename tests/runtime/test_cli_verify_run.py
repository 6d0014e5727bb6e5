"""``edgequant verify`` / ``edgequant run`` through the CLI: ONNX and TFLite reports print and
serialize the same way; exit codes 0 (within --max-lsb), 1 (beyond), 2 (bad input).

Oracles: LiteRT run by hand sample by sample, and exact injected faults.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgequant.cli import EXIT_CHECK_FAILED, EXIT_USER_ERROR, app
from edgequant.runtime.tflite_reference import TFLiteReferenceRunner

#: Columns of the verify table, the same for both formats.
COLUMNS = ("tensor", "engine", "kind", "producer", "max diff", "bit-identical")


@pytest.fixture
def data(models, tmp_path):
    p = tmp_path / "data.npz"
    np.savez(p, x=models.x)
    return p


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_verify_json_is_the_same_shape_for_onnx_and_tflite(models, data):
    onnx_res = _invoke("verify", models.qdq_path, "--data", data, "--json")
    tfl_res = _invoke("verify", models.tflite_path, "--data", data, "--json")
    assert onnx_res.exit_code == tfl_res.exit_code == 0, onnx_res.output + tfl_res.output
    a, b = json.loads(onnx_res.stdout), json.loads(tfl_res.stdout)
    assert a.keys() == b.keys()
    assert [set(d) for d in a["outputs"]] == [set(b["outputs"][0])]
    assert a["engines"] == ["onnxruntime"]
    assert b["engines"] == ["litert/builtin", "litert/xnnpack"]
    assert a["max_lsb"] == b["max_lsb"] == 0


def test_verify_table_is_the_same_for_onnx_and_tflite(models, data):
    for path in (models.qdq_path, models.tflite_path):
        res = _invoke("verify", path, "--data", data)
        assert res.exit_code == 0, res.output
        header = next(line for line in res.stdout.splitlines() if "tensor" in line)
        positions = [header.index(c) for c in COLUMNS]
        assert positions == sorted(positions)
        assert f"{len(models.x)} sample(s)" in res.stdout


def test_verify_exit_codes_follow_max_lsb(models, data, monkeypatch):
    exact = TFLiteReferenceRunner._run
    monkeypatch.setattr(TFLiteReferenceRunner, "_run",
                        lambda self, feeds: [(y.astype(np.int16) + 1).astype(np.int8)
                                             for y in exact(self, feeds)])
    assert _invoke("verify", models.tflite_int8_path, "--data", data).exit_code == \
        EXIT_CHECK_FAILED
    assert _invoke("verify", models.tflite_int8_path, "--data", data, "--max-lsb", "1"
                   ).exit_code == 0
    res = _invoke("verify", models.tflite_int8_path, "--data", data.parent / "missing.npz")
    assert res.exit_code == EXIT_USER_ERROR


@pytest.mark.parametrize("engine", ["litert", "reference"])
def test_run_batch_1_tflite_on_many_samples(models, data, tmp_path, engine):
    """The oracle is LiteRT by hand: XNNPACK (LiteRT's default) for ``litert``, the builtin
    kernels for ``reference`` (the TFLite reference reproduces those by default)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    out = tmp_path / f"out_{engine}.npz"
    res = _invoke("run", models.tflite_path, "--data", data, "-o", out, "--engine", engine)
    assert res.exit_code == 0, res.output
    kwargs = {} if engine == "litert" else {
        "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_path=str(models.tflite_path), **kwargs)
    it.allocate_tensors()
    (din,), (dout,) = it.get_input_details(), it.get_output_details()
    want = []
    for i in range(len(models.x)):  # LiteRT by hand, one sample per call
        it.set_tensor(din["index"], models.x[i:i + 1])
        it.invoke()
        want.append(it.get_tensor(dout["index"]).copy())
    with np.load(out) as z:
        np.testing.assert_array_equal(z["y"], np.concatenate(want))  # (N, 5) float32


def test_feeds_match_inputs_by_position_when_names_differ(models, tmp_path):
    """``run`` and ``verify`` (both formats) take a one-input model's array under any key."""
    from edgequant.runtime.runner import match_feeds
    from edgequant.runtime.runners import open_runner

    renamed = tmp_path / "renamed.npz"
    np.savez(renamed, images=models.x)
    for path in (models.qdq_path, models.tflite_path):
        assert _invoke("verify", path, "--data", renamed).exit_code == 0
        out = tmp_path / f"{path.stem}.npz"
        assert _invoke("run", path, "--data", renamed, "-o", out).exit_code == 0
        with np.load(out) as z:
            np.testing.assert_array_equal(z["y"], open_runner(path).run({"x": models.x})[0])
    with pytest.raises(ValueError, match=r"\['x'\]"):
        match_feeds(open_runner(models.qdq_path), {"a": models.x, "b": models.x})
