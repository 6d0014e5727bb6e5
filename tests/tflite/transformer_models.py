"""Transformer test models for TFLite export: a 1-layer random-weight BERT (Hugging Face
``BertModel`` + masked mean pooling, exported with eager or SDPA attention, dynamic
``batch`` / ``sequence`` dims), token batches with padding, hand-built ONNX graphs for the
erf-GELU pattern and the mask plumbing ops, and LiteRT helpers that read every tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Vocabulary, width, heads, FFN width and sequence length of the tiny encoder.
VOCAB, HIDDEN, HEADS, FFN, SEQ = 60, 32, 2, 64, 8
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tiny_bert_onnx(path: Path, attn: str) -> Path:
    """A seeded 1-layer BertModel with masked mean pooling → float ONNX at ``path``."""
    import torch
    from transformers import BertConfig, BertModel

    from edgequant_zoo.bert_pooling import MeanPooledBert
    from edgequant_zoo.onnx_export import export_onnx

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=1,
                     num_attention_heads=HEADS, intermediate_size=FFN,
                     max_position_embeddings=2 * SEQ, attn_implementation=attn)
    bert = BertModel(cfg).eval()

    feeds = tokens(2)
    example = tuple(torch.from_numpy(feeds[k]) for k in INPUTS)
    axes = {k: {0: "batch", 1: "sequence"} for k in INPUTS}
    return export_onnx(MeanPooledBert(bert).eval(), path, example, input_names=INPUTS,
                       output_names=("pooled",), dynamic_axes=axes)


def tokens(n: int, seq: int = SEQ, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random int64 token rows with right padding (each row ≥ 2 real tokens)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(n, seq), dtype=np.int64)
    lengths = rng.integers(2, seq + 1, size=n)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)  # (n, seq)
    types = (np.arange(seq)[None, :] >= lengths[:, None] // 2).astype(np.int64) * mask
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}


def _model(nodes, inputs, outputs, inits, opset: int = 21) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    onnx.checker.check_model(m)
    return m


def erf_gelu_model(form: str) -> onnx.ModelProto:
    """MatMul → the exact-GELU pattern as older exporters write it → output.

    ``form``: ``hf`` (x·0.5 first, then · (1 + erf(x/√2))), ``tail`` ((1 + erf) · x · 0.5)
    or ``lone`` (Erf alone, no GELU around it).
    """
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.5, (16, 24)).astype(np.float32)
    f32 = np.float32
    inits = {"w": w, "sqrt2": f32(np.sqrt(2.0)), "one": f32(1.0), "half": f32(0.5)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc")]
    if form == "lone":
        nodes.append(helper.make_node("Erf", ["h"], ["y"], name="lone_erf"))
    else:
        nodes += [helper.make_node("Div", ["h", "sqrt2"], ["d"], name="div"),
                  helper.make_node("Erf", ["d"], ["e"], name="erf"),
                  helper.make_node("Add", ["e", "one"], ["p"], name="add1")]
        if form == "hf":
            nodes += [helper.make_node("Mul", ["h", "half"], ["hh"], name="half_x"),
                      helper.make_node("Mul", ["hh", "p"], ["y"], name="mul")]
        else:
            nodes += [helper.make_node("Mul", ["p", "h"], ["px"], name="mul"),
                      helper.make_node("Mul", ["px", "half"], ["y"], name="half_x")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 24])], inits)


def mask_ops_model() -> onnx.ModelProto:
    """Mask plumbing and small arithmetic as exporters write them: ids / mask (int64) and a
    float input through Cast, Equal, Not, Where (−inf), GatherND, Slice, Expand, IsNaN,
    Pow, Sqrt, Neg, Max, Clip (min only), ReduceMax, ReduceL2, LayerNormalization without
    bias, and Gather of a float table by ids."""
    rng = np.random.default_rng(2)
    f32 = np.float32
    idx = np.stack(np.meshgrid(np.zeros(1, np.int64), np.arange(SEQ), indexing="ij"), -1)
    inits = {
        "table": rng.normal(0, 1, (VOCAB, 6)).astype(f32), "zero": np.int64(0),
        "ninf": f32(-np.inf), "fzero": f32(0.0), "two": f32(2.0), "lo": f32(1e-3),
        "idx": idx.reshape(1, SEQ, 2), "starts": np.array([1], np.int64),
        "ends": np.array([np.iinfo(np.int64).max], np.int64), "axes": np.array([1], np.int64),
        "shape": np.array([1, SEQ, 6], np.int64), "rax": np.array([-1], np.int64),
        "gamma": rng.uniform(0.5, 1.5, 6).astype(f32),
    }
    n = helper.make_node
    nodes = [
        n("Gather", ["table", "ids"], ["emb"], name="gather", axis=0),  # (1, S, 6)
        n("Equal", ["mask", "zero"], ["pad"], name="equal"),  # (1, S) bool
        n("Not", ["pad"], ["keep"], name="not"),
        n("GatherND", ["keep", "idx"], ["keep2"], name="gather_nd"),  # (1, S)
        n("Where", ["keep2", "fzero", "ninf"], ["bias"], name="where"),  # (1, S) 0 / -inf
        n("Cast", ["keep2"], ["keepf"], name="cast", to=TensorProto.FLOAT),
        n("Unsqueeze", ["keepf", "rax"], ["keep3"], name="unsq"),  # (1, S, 1)
        n("Mul", ["emb", "keep3"], ["masked"], name="mul"),
        n("Pow", ["masked", "two"], ["sq"], name="pow"),
        n("Sqrt", ["sq"], ["absx"], name="sqrt"),
        n("Neg", ["absx"], ["negx"], name="neg"),
        n("Max", ["negx", "masked"], ["mx"], name="max"),
        n("LayerNormalization", ["mx", "gamma"], ["ln"], name="ln", axis=-1, epsilon=1e-5),
        n("Slice", ["ln", "starts", "ends", "axes"], ["tail"], name="slice"),  # (1, S-1, 6)
        n("ReduceMax", ["tail", "rax"], ["rmax"], name="rmax", keepdims=1),  # (1, S-1, 1)
        n("ReduceL2", ["ln", "axes"], ["norm"], name="l2", keepdims=0),  # (1, 6)
        n("Clip", ["norm", "lo"], ["normc"], name="clip"),
        n("Expand", ["normc", "shape"], ["big"], name="expand"),  # (1, S, 6)
        n("IsNaN", ["big"], ["nan"], name="isnan"),
        n("Where", ["nan", "fzero", "big"], ["clean"], name="where_nan"),
    ]
    outputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in (
        ("bias", [1, SEQ]), ("rmax", [1, SEQ - 1, 1]), ("clean", [1, SEQ, 6]))]
    ins = [helper.make_tensor_value_info(k, TensorProto.INT64, [1, SEQ]) for k in ("ids", "mask")]
    return _model(nodes, ins, outputs, inits)


def clip_chain_model() -> onnx.ModelProto:
    """MatMul → Slice → Gather (constant indices) → Max(g, Neg g) → Clip(min only) → MatMul:
    quantized, the Clip is an integer MAXIMUM with its bound in the output's qparams."""
    rng = np.random.default_rng(4)
    f32 = np.float32
    inits = {"w": rng.normal(0, 0.5, (16, 16)).astype(f32), "w2": rng.normal(0, 0.5, (16, 8)).astype(f32),
             "starts": np.array([1], np.int64), "ends": np.array([7], np.int64),
             "axes": np.array([1], np.int64), "gidx": np.array([0, -2, 4], np.int64),
             "lo": f32(-0.5)}
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w"], ["h"], name="fc"),
             n("Slice", ["h", "starts", "ends", "axes"], ["s"], name="slice"),  # (1, 6, 16)
             n("Gather", ["s", "gidx"], ["g"], name="gather", axis=1),  # (1, 3, 16)
             n("Neg", ["g"], ["g2"], name="neg"),
             n("Max", ["g", "g2"], ["m"], name="max"),  # |g|
             n("Clip", ["m", "lo"], ["c"], name="clip"),
             n("MatMul", ["c", "w2"], ["y"], name="fc2")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8])], inits)


def litert_tensors(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Run one sample through LiteRT keeping every tensor: name → (array, (scale, zp))."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():  # "intended for debugging": that is what this is for
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], feeds[d["name"]].astype(d["dtype"]))
    it.invoke()
    out = {}
    for d in it.get_tensor_details():
        try:
            out[d["name"]] = (it.get_tensor(d["index"]), d["quantization"])
        except ValueError:  # constant / unallocated tensors
            continue
    return out


def ort_tensors(model: Path | onnx.ModelProto, feeds: dict[str, np.ndarray],
                names: list[str]) -> dict[str, np.ndarray]:
    """onnxruntime (no graph optimizations: each Q/DQ evaluated as written) values of the
    named tensors."""
    import onnxruntime as ort

    m = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
    m = onnx.ModelProto.FromString(m.SerializeToString())
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = s.run(names, feeds)
    return dict(zip(names, got, strict=True))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                       1e-12)
