"""``edgequant verify`` on transformer ``.tflite`` files, end to end through the CLI: a
1-layer random-weight BERT (GATHER embeddings, hybrid and int8 FULLY_CONNECTED, BATCH_MATMUL
attention, float LayerNorm / Softmax / GELU islands, SELECT_V2 / CAST / BROADCAST_TO mask
plumbing) quantized w8a8 and w8a16, LiteRT's builtin kernels and XNNPACK vs the reference
executor.

Oracle: LiteRT on the same file. With ``--isolate-integer`` every integer tensor handed to a
float island must be bit identical (the integer kernels are modelled exactly); the float
output within :data:`FLOAT_ATOL`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("transformers")
pytest.importorskip("ai_edge_litert")

import transformer_models as T

import edgequant as eq
from edgequant.cli import app
from edgequant.export.tflite import export_tflite

pytestmark = pytest.mark.slow  # exports a BERT and runs it on LiteRT twice per recipe

#: The pooled float output: float islands (LayerNorm, Softmax, GELU, hybrid FC) are a float
#: oracle in the reference (LiteRT sums in its own order): a few float32 ulps of values ~1.
FLOAT_ATOL = 1e-4
#: Integer tensors with ``--isolate-integer``: every integer kernel is modelled exactly.
MAX_LSB = {"w8a8": 0, "w8a16": 0}


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    d = tmp_path_factory.mktemp("verify_bert")
    src = T.tiny_bert_onnx(d / "bert.onnx", "eager")
    data = d / "tokens.npz"
    np.savez(data, **T.tokens(8, seed=5))
    return d, src, data


def _tflite(bert, recipe: str):
    d, src, _ = bert
    qm = eq.quantize(str(src), recipe, T.tokens(16, seed=1))
    return export_tflite(qm.save(d / f"{recipe}.onnx"), d / f"{recipe}.tflite",
                         fixed_dims={"sequence": T.SEQ}).path


def _verify(*args) -> tuple[int, dict]:
    res = CliRunner().invoke(app, ["verify", *map(str, args), "--json"])
    return res.exit_code, json.loads(res.stdout[res.stdout.index("{"):])


@pytest.mark.parametrize("recipe", ["w8a8", "w8a16"])
def test_verify_transformer_tflite_isolated_integers_match(bert, recipe):
    path = _tflite(bert, recipe)
    code, rep = _verify(path, "--data", bert[2], "--isolate-integer")
    assert rep["samples"] == 8 and rep["boundaries"], rep
    assert {d["engine"] for d in rep["outputs"]} == {"litert/builtin", "litert/xnnpack"}
    for d in rep["outputs"]:
        assert d["kind"] == "float" and d["max_diff"] <= FLOAT_ATOL, d
    assert rep["nodes"], "integer tensors read by DEQUANTIZE are compared"
    worst = max(d["max_diff"] for d in rep["nodes"])
    assert all(d["kind"] == "integer" for d in rep["nodes"])
    assert worst <= MAX_LSB[recipe], [d for d in rep["nodes"] if d["max_diff"] > 0]
    assert code == 0  # float outputs are not LSB-checked; every integer node within bounds


#: Without isolation an engine's last-ulp float rounding may flip a QUANTIZE by 1 LSB and
#: move the tensors downstream of it by a step or so.
PLAIN_MAX_LSB = 2


def test_verify_transformer_tflite_per_node_names_float_layers_without_isolation(bert):
    path = _tflite(bert, "w8a8")
    code, rep = _verify(path, "--data", bert[2], "--per-node")
    assert rep["float_layers"] and not rep["boundaries"]
    assert all(d["max_diff"] <= 0.1 for d in rep["outputs"]), rep["outputs"]
    from edgequant.export.tflite.builder import load_model

    n_ops = len(load_model(path.read_bytes()).subgraphs[0].operators)
    names = {d["name"] for d in rep["nodes"]}
    assert len(names) == n_ops - 1, "every operator's output except the graph output"
    assert {"GATHER", "BATCH_MATMUL", "SELECT_V2", "GELU", "SOFTMAX"} <= {
        d["producer"] for d in rep["nodes"]}
    lsb = [d for d in rep["nodes"] if d["kind"] != "float"]
    assert lsb and max(d["max_diff"] for d in lsb) <= PLAIN_MAX_LSB
    assert code == 0
