"""Transformer graphs → .tflite, run in LiteRT and compared with onnxruntime on the same
tokens: a 1-layer random-weight BERT (eager and SDPA attention) in float, static w8a8 and
w8a16 (16x8), plus hand-built graphs for the erf-GELU pattern and the mask plumbing ops."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("transformers")
pytest.importorskip("ai_edge_litert")

import transformer_models as T

import edgequant as eq
from edgequant.errors import UnsupportedOpError
from edgequant.export.tflite import export_tflite
from edgequant.export.tflite.builder import load_model
from edgequant.runtime.litert import LiteRTRunner

#: Float export: LiteRT's float kernels vs onnxruntime (different summation order only).
FLOAT_ATOL = 1e-4
#: w8a16: the integer parts are 16x8 on both sides; what differs is fixed-point vs float
#: requantization, well under an int16 step of the float parts.
W8A16_MIN_COS = 0.999
#: w8a8 int8 tensors computed from the same float input: LiteRT's fixed-point requantization
#: (round half away) vs onnxruntime's float one (half to even) differ by at most 1 LSB.
INT8_MAX_LSB = 1
#: w8a8 end to end: LiteRT must be as close to the float model as onnxruntime's QDQ run is
#: (1-LSB differences in the coarse attention scores move single softmax rows a little).
W8A8_COS_SLACK = 0.01
FIXED = {"sequence": T.SEQ}
ROWS = 6


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def bert(request, tmp_path_factory):
    """Namespace: attn, dir, src (float ONNX path), feeds (evaluation tokens)."""
    d = tmp_path_factory.mktemp(f"tfm_{request.param}")
    return SimpleNamespace(attn=request.param, dir=d, feeds=T.tokens(ROWS, seed=5),
                           src=T.tiny_bert_onnx(d / "bert.onnx", request.param))


def _ort(path, feeds) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


_QUANTIZED: dict[tuple[str, str], tuple] = {}


def _quantized(bert, recipe: str):
    """(QDQ ONNX path, .tflite path, ExportResult), built once per module and recipe."""
    d, src = bert.dir, bert.src
    key = (str(d), recipe)
    if key in _QUANTIZED:
        return _QUANTIZED[key]
    qm = eq.quantize(str(src), recipe, T.tokens(16, seed=1))
    onnx_path = qm.save(d / f"{recipe}.onnx")
    tfl = d / f"{recipe}.tflite"
    _QUANTIZED[key] = onnx_path, tfl, export_tflite(onnx_path, tfl, fixed_dims=FIXED)
    return _QUANTIZED[key]


def test_float_bert_matches_onnxruntime(bert):
    src, feeds = bert.src, bert.feeds
    res = export_tflite(src, bert.dir / "float.tflite", fixed_dims=FIXED)
    assert res.mode == "fp32"
    for op in ("GATHER", "BATCH_MATMUL", "FULLY_CONNECTED", "GELU", "SOFTMAX", "RSQRT"):
        assert op in res.ops, op
    want = _ort(src, feeds)  # (ROWS, HIDDEN)
    got = LiteRTRunner(res.path).run(feeds)[0]  # batch-1 model, run row by row
    np.testing.assert_allclose(got, want, atol=FLOAT_ATOL, rtol=0)


def test_w8a16_bert_runs_16x8_in_litert(bert):
    feeds = bert.feeds
    onnx_path, tfl, res = _quantized(bert, "w8a16")
    assert res.mode == "int16x8"
    model = load_model(tfl.read_bytes())
    sub = model.subgraphs[0]
    from ai_edge_litert import schema_py_generated as schema
    bmm = [op for op in sub.operators
           if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.BATCH_MATMUL]
    assert bmm, "attention MatMuls must be BATCH_MATMUL"
    assert all(sub.tensors[i].type == schema.TensorType.INT16 for op in bmm for i in op.inputs)
    cos = T.cosine(LiteRTRunner(tfl).run(feeds)[0], _ort(onnx_path, feeds))
    assert cos.min() >= W8A16_MIN_COS, cos


def test_w8a8_bert_int8_parts_within_one_lsb(bert):
    src, feeds = bert.src, bert.feeds
    onnx_path, tfl, res = _quantized(bert, "w8a8")
    # the FFN-output MatMul runs per-row dynamic int8 (transformer_ffn_output='dynamic'):
    # LiteRT's hybrid FULLY_CONNECTED quantizes its float input per row the same way
    assert res.mode == "mixed"
    hybrid = {k for k, v in res.kinds.items() if v == "hybrid"}
    assert hybrid and all(k.endswith("MatMulIntegerToFloat") for k in hybrid), res.kinds
    assert set(res.kinds.values()) == {"float", "int8", "hybrid"}
    assert "float" in res.kinds.values()  # LayerNorm / Softmax / GELU stay float by rule
    # the Q / K / V projections read the embedding LayerNorm (float on both sides): their
    # int8 outputs are directly comparable
    m = onnx.load(str(onnx_path))
    ln = next(n.output[0] for n in m.graph.node if n.op_type == "LayerNormalization")
    dq = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"
          and n.input[0] in {q.output[0] for q in m.graph.node
                             if q.op_type == "QuantizeLinear" and q.input[0] == ln}}
    mm = [n.output[0] for n in m.graph.node if n.op_type == "MatMul" and n.input[0] in dq]
    assert len(mm) == 3, mm
    # each projection's bias Add is fused into its FULLY_CONNECTED (int32 bias): compare
    # the Add outputs (onnxruntime rounds twice, MatMul then Add; LiteRT once: ≤ 1 LSB)
    q_of = {n.input[0]: n.output[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    dq_of = {n.input[0]: n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    proj = [n.output[0] for n in m.graph.node if n.op_type == "Add"
            and {dq_of[q_of[y]] for y in mm} & set(n.input)]
    assert len(proj) == 3, proj
    one = {k: v[:1] for k, v in feeds.items()}
    lite = T.litert_tensors(tfl, one)
    ref = T.ort_tensors(m, one, proj)
    for name in proj:
        q, (scale, zp) = lite[name]
        assert q.dtype == np.int8
        want = np.clip(np.rint(ref[name] / np.float32(scale)) + zp, -128, 127)
        assert np.abs(q.astype(np.int64) - want).max() <= INT8_MAX_LSB, name
    float_out = _ort(src, feeds)
    lite_cos = T.cosine(LiteRTRunner(tfl).run(feeds)[0], float_out)
    ort_cos = T.cosine(_ort(onnx_path, feeds), float_out)
    assert lite_cos.mean() >= ort_cos.mean() - W8A8_COS_SLACK, (lite_cos, ort_cos)


def test_w8a8_layout_for_litert_kernels(bert):
    """The embedding table stays int8; int8 BATCH_MATMULs read a zero-point-0 right-hand
    side (XNNPACK's condition); projection biases live in the FULLY_CONNECTEDs."""
    _, tfl, res = _quantized(bert, "w8a8")
    from ai_edge_litert import schema_py_generated as schema
    model = load_model(tfl.read_bytes())
    sub = model.subgraphs[0]
    op = schema.BuiltinOperator

    def ops(code):
        return [o for o in sub.operators if model.operatorCodes[o.opcodeIndex].builtinCode == code]

    tables = [sub.tensors[o.inputs[0]] for o in ops(op.GATHER)
              if tuple(sub.tensors[o.inputs[0]].shape) == (T.VOCAB, T.HIDDEN)]
    assert tables and all(t.type == schema.TensorType.INT8 for t in tables)
    bmm = [o for o in ops(op.BATCH_MATMUL) if sub.tensors[o.inputs[1]].type == schema.TensorType.INT8]
    assert len(bmm) == 2
    assert all(int(sub.tensors[o.inputs[1]].quantization.zeroPoint[0]) == 0 for o in bmm)
    fc_out = {int(o.outputs[0]) for o in ops(op.FULLY_CONNECTED)}
    int8_adds = [o for o in ops(op.ADD) if sub.tensors[o.inputs[0]].type == schema.TensorType.INT8]
    assert not any(int(i) in fc_out for o in int8_adds for i in o.inputs)
    assert any("zero point 0" in n for n in res.notes)


def test_dynamic_sequence_needs_fixed_dims(bert, tmp_path):
    src = bert.src
    with pytest.raises(UnsupportedOpError, match=r"sequence.*fixed_dims"):
        export_tflite(src, tmp_path / "m.tflite")


@pytest.mark.parametrize("form", ["hf", "tail"])
def test_erf_gelu_pattern_becomes_gelu(form, tmp_path):
    m = T.erf_gelu_model(form)
    res = export_tflite(m, tmp_path / "g.tflite")
    assert res.ops.get("GELU") == 1 and "MUL" not in res.ops, res.ops
    x = np.random.default_rng(3).normal(0, 1, (1, 8, 16)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(LiteRTRunner(res.path).run({"x": x})[0], want, atol=1e-5)


def test_lone_erf_is_refused_by_name(tmp_path):
    with pytest.raises(UnsupportedOpError, match=r"lone_erf.*Erf"):
        export_tflite(T.erf_gelu_model("lone"), tmp_path / "e.tflite")
    assert not (tmp_path / "e.tflite").exists()


def test_mask_ops_match_onnxruntime(tmp_path):
    m = T.mask_ops_model()
    res = export_tflite(m, tmp_path / "mask.tflite")
    for op in ("GATHER_ND", "SELECT_V2", "EQUAL", "LOGICAL_NOT", "STRIDED_SLICE", "BROADCAST_TO",
               "NOT_EQUAL", "REDUCE_MAX", "SQRT", "NEG", "MAXIMUM", "CAST"):
        assert op in res.ops, op
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    runner = LiteRTRunner(res.path)
    for seed in range(3):
        t = T.tokens(1, seed=seed)
        feeds = {"ids": t["input_ids"], "mask": t["attention_mask"]}
        for got, want in zip(runner.run(feeds), s.run(None, feeds), strict=True):
            assert np.array_equal(np.isneginf(got), np.isneginf(want))
            np.testing.assert_allclose(np.where(np.isinf(got), 0, got),
                                       np.where(np.isinf(want), 0, want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("recipe", ["w8a8", "w8a16"])
def test_integer_clip_and_float_movement_ops(recipe, tmp_path):
    """Quantized: Clip(min only) runs as an integer MAXIMUM; Slice / Gather (a negative
    constant index) / Neg / Max run where the QDQ graph puts them. LiteRT vs onnxruntime on
    the same inputs: within one step of the output's scale."""
    src = tmp_path / "chain.onnx"
    onnx.save(T.clip_chain_model(), src)
    rng = np.random.default_rng(6)
    qm = eq.quantize(str(src), recipe, {"x": rng.normal(0, 1, (32, 8, 16)).astype(np.float32)})
    qdq = qm.save(tmp_path / "q.onnx")
    res = export_tflite(qdq, tmp_path / "q.tflite")
    assert res.kinds["clip"] == {"w8a8": "int8", "w8a16": "int16x8"}[recipe]
    assert {"STRIDED_SLICE", "GATHER", "NEG", "MAXIMUM"} <= set(res.ops)
    x = rng.normal(0, 1, (4, 8, 16)).astype(np.float32)
    want = np.concatenate([_ort(qdq, {"x": x[i:i + 1]}) for i in range(4)])  # (4, 3, 8)
    got = LiteRTRunner(res.path).run({"x": x})[0]
    from edgequant.graph.read_qdq import read_qdq
    g = read_qdq(onnx.load(str(qdq)))
    y = next((k for k, v in g.public_names.items() if v == "y"), "y")
    step = float(g.act_q[y].scale)  # the output's quantum
    assert np.abs(got - want).max() <= step * (1 + 1e-6)
