"""all-MiniLM-L6-v2 (real weights) quantized every way, side by side in one run.

The sentence-transformers pipeline (BERT → masked mean pooling → L2 norm) is exported from
the Hugging Face model twice, with SDPA attention (the Hugging Face default: dtype-minimum
mask, IsNaN guards) and with eager attention. Text is real: stdlib docstrings, calibration
and evaluation drawn from disjoint modules (``edgequant_zoo.corpus``), 128 tokens, padded.

Rows: edgequant ``w8a8`` (static; the transformer rules apply by default), ``w8a8`` +
SmoothQuant (alpha searched per LayerNorm group), ``w8a8`` + LLM.int8() decomposition,
``w8_dynamic``, and onnxruntime's ``quantize_static`` (after ``quant_pre_process``, QDQ,
per-channel int8 weights, uint8 activations, same calibration text) and ``quantize_dynamic``
(per-channel). Columns: mean and minimum cosine of the sentence embeddings to float, file
size ratio to float, and speed relative to float (float ms / model ms; > 1 is faster) in
onnxruntime, 1 thread, at batch 1 and 16 (interleaved rounds, median).

Rows ``FFN-out weight-only`` / ``FFN-out float`` set option ``transformer_ffn_output``
(default ``dynamic``: the post-GELU MatMuls run per-row dynamic int8 inside the static model).

Run: ``.venv/bin/python bench/transformer_int8.py [--calib 64] [--eval 200] [--threshold 3]
[--repeats 12]``

Measured 2026-12-02 04:25–04:58 UTC (2 cores shared with four other jobs, load 9–15 during
the run, under ``nice``: speed ratios are noisy, columns are interleaved in one run;
onnxruntime 1.31, 1 thread, --calib 64 --eval 200 --repeats 12). The static w8a8 file's
three embedding tables are int8 (the run also counted their float per-row scale tables, which
the printout now skips):

    [sdpa attention]
    model                                   mean cos  min cos   size x fp32 b1 x fp32 b16
    fp32                                      1.0000   1.0000  1.000      1.00       1.00
    edgequant w8a8                            0.9906   0.9836  0.253      1.89       1.92
    edgequant w8a8, FFN-out weight-only       0.9908   0.9792  0.253      1.67       1.45
    edgequant w8a8, FFN-out float             0.9908   0.9780  0.369      1.59       1.40
    edgequant w8a8 + SmoothQuant              0.9963   0.9913  0.253      2.09       1.78
    edgequant w8a8 + LLM.int8 (t=3)           0.9951   0.9911  0.287      1.04       1.15
    edgequant w8_dynamic                      0.9976   0.9952  0.252      2.25       1.83
    onnxruntime quantize_static               0.3397   0.0750  0.251      1.54       1.66
    onnxruntime quantize_dynamic              0.9932   0.9866  0.257      2.03       1.77
    (LLM.int8 t=3: 9.2% of the split MatMuls' input features in float)

    [eager attention]
    model                                   mean cos  min cos   size x fp32 b1 x fp32 b16
    fp32                                      1.0000   1.0000  1.000      1.00       1.00
    edgequant w8a8                            0.9906   0.9836  0.253      2.43       1.85
    edgequant w8a8, FFN-out weight-only       0.9908   0.9792  0.253      1.69       1.60
    edgequant w8a8, FFN-out float             0.9909   0.9780  0.370      1.67       1.53
    edgequant w8a8 + SmoothQuant              0.9963   0.9916  0.254      2.07       1.92
    edgequant w8a8 + LLM.int8 (t=3)           0.9951   0.9911  0.287      1.25       1.20
    edgequant w8_dynamic                      0.9976   0.9952  0.253      2.11       2.10
    onnxruntime quantize_static               0.3408   0.0533  0.257      1.77       1.88
    onnxruntime quantize_dynamic              0.9932   0.9867  0.256      2.15       1.96

Static w8a8 meets the issue's bars: mean cosine 0.9906 ≥ 0.99, file 0.253x (onnxruntime's
static model: 0.251x, and it collapses on the mask, 0.34), and faster than fp32 (1.9–2.4x);
running the FFN-output MatMuls per-row dynamic instead of float shrank the file from 0.37x
and made it faster (weight-only int8 gives the same size at about float-FFN speed).

w8_dynamic vs onnxruntime's quantize_dynamic: ahead at b16 in both exports and at b1 in SDPA;
eager b1 2.11 vs 2.15 is inside this run's noise. Interleaved re-runs at lower load (4–9,
scratch harness, same models, 30 rounds): SDPA b1 2.25 vs 2.04, b16 2.35 vs 2.25 (and 2.35 vs
1.94, 2.09 vs 1.92); eager b1 2.09 vs 2.04, b16 2.19 vs 2.05 — with better accuracy (0.9976
vs 0.9932). Where the time goes: ``graph/passes/dynamic.py`` docstring.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from peers import ort_quantize_dynamic, ort_quantize_static

import edgequant as eq
from edgequant.analysis.latency import measure_interleaved
from edgequant_zoo.corpus import CALIBRATION_MODULES, EVALUATION_MODULES, docstring_corpus
from edgequant_zoo.minilm import MINILM_INPUTS, export_minilm, tokenize

SEQ_LEN = 128


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def embed(s: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
    n = len(feeds["input_ids"])
    return np.concatenate([s.run(None, {k: v[i:i + 25] for k, v in feeds.items()})[0]
                           for i in range(0, n, 25)])  # (n, 384)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                       1e-12)  # (n,)


def gather_tables(path: Path) -> str:
    """The element types of the Gather tables (embeddings) stored in ``path``, e.g. ``INT8 x3``."""
    import onnx

    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    kinds = [onnx.TensorProto.DataType.Name(inits[n.input[0]].data_type)
             for n in m.graph.node if n.op_type == "Gather" and n.input[0] in inits
             and len(inits[n.input[0]].dims) == 2 and inits[n.input[0]].dims[1] > 1]  # not scales
    return ", ".join(f"{k} x{kinds.count(k)}" for k in sorted(set(kinds)))


def build(attn: str, d: Path, cal: dict, threshold: float) -> dict[str, Path]:
    src = export_minilm(d / f"minilm_{attn}.onnx", seq_len=SEQ_LEN, attn_implementation=attn)
    w8a8 = eq.get_recipe("w8a8")
    paths = {"fp32": src}
    for name, recipe in (("edgequant w8a8", w8a8),
                         ("edgequant w8a8, FFN-out weight-only", w8a8.with_options(
                             transformer_ffn_output="weight_only")),
                         ("edgequant w8a8, FFN-out float", w8a8.with_options(
                             transformer_ffn_output="float")),
                         ("edgequant w8a8 + SmoothQuant", w8a8.with_options(
                             smoothquant_alpha="search")),
                         (f"edgequant w8a8 + LLM.int8 (t={threshold:g})", w8a8.with_options(
                             outlier_threshold=threshold))):
        qm = eq.quantize(str(src), recipe, cal)
        paths[name] = qm.save(d / f"{attn}_{len(paths)}.onnx")
        if recipe is w8a8:
            print(f"  [{attn}] w8a8 embedding tables: {gather_tables(paths[name])}")
        if "outliers" in qm.report:
            print(f"  [{attn}] outlier share (input features in float): "
                  f"{qm.report['outliers']['share']:.2%}")
    paths["edgequant w8_dynamic"] = eq.quantize(str(src), "w8_dynamic").save(
        d / f"{attn}_dyn.onnx")
    paths["onnxruntime quantize_static"] = ort_quantize_static(
        src, d / f"{attn}_ort_static.onnx", cal, batch=8)
    paths["onnxruntime quantize_dynamic"] = ort_quantize_dynamic(src, d / f"{attn}_ort_dyn.onnx")
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--threshold", type=float, default=3.0, help="LLM.int8 outlier threshold")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    cal = tokenize(docstring_corpus(args.calib, modules=CALIBRATION_MODULES), SEQ_LEN)
    ev = tokenize(docstring_corpus(args.eval, modules=EVALUATION_MODULES), SEQ_LEN)
    one = {k: v[:1] for k, v in ev.items()}
    sixteen = {k: v[:16] for k, v in ev.items()}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        print(f"all-MiniLM-L6-v2, {args.calib} calibration / {args.eval} evaluation docstrings "
              f"(disjoint modules), {SEQ_LEN} tokens, onnxruntime 1 thread")
        for attn in ("sdpa", "eager"):
            paths = build(attn, d, cal, args.threshold)
            sess = {k: session(p) for k, p in paths.items()}
            ref = embed(sess["fp32"], ev)
            speed = {}
            for label, feeds in (("b1", one), ("b16", sixteen)):
                ms = measure_interleaved({k: (lambda s=s, f=feeds: s.run(None, f))
                                          for k, s in sess.items()}, repeats=args.repeats)
                speed[label] = {k: ms["fp32"] / ms[k] for k in ms}
            size0 = paths["fp32"].stat().st_size
            print(f"\n[{attn} attention]")
            print(f"{'model':<38} {'mean cos':>9} {'min cos':>8} {'size':>6} "
                  f"{'x fp32 b1':>9} {'x fp32 b16':>10}")
            for k, p in paths.items():
                c = row_cosines(ref, embed(sess[k], ev))
                print(f"{k:<38} {c.mean():>9.4f} {c.min():>8.4f} {p.stat().st_size / size0:>6.3f} "
                      f"{speed['b1'][k]:>9.2f} {speed['b16'][k]:>10.2f}", flush=True)
    assert set(MINILM_INPUTS) == set(ev)


if __name__ == "__main__":
    main()
