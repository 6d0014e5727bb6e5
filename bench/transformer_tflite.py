"""all-MiniLM-L6-v2 (real weights) → .tflite in fp32, static w8a8 and w8a16 (16x8), run in
LiteRT, side by side in one run.

The sentence-transformers pipeline (BERT → masked mean pooling → L2 norm) is exported from
the Hugging Face model (eager and SDPA attention), quantized with ``edgequant.quantize``
(the transformer rules apply by default: LayerNorm / Softmax / GELU / residual adds and the
mask path float, attention and projection MatMuls integer) and saved as ``.tflite`` with the
sequence fixed (``fixed_dims={"sequence": 128}``, CLI ``--fix-dim sequence=128``). Text is
real: stdlib docstrings, calibration and evaluation from disjoint modules
(``edgequant_zoo.corpus``), 128 tokens, padded.

Columns: mean and minimum cosine of the sentence embeddings to the float ONNX model (the
same QDQ model in onnxruntime beside each LiteRT row), file size relative to the fp32
``.tflite``, and LiteRT speed relative to the fp32 ``.tflite`` (fp32 ms / model ms, > 1 is
faster) at batch 1, 1 thread, XNNPACK on (LiteRT's default), interleaved rounds, median.

Run: ``.venv/bin/python bench/transformer_tflite.py [--calib 64] [--eval 200] [--repeats 10]``

Measured 2026-12-02 after merging the per-row dynamic FFN-output default (lead's run, 2 cores,
load ~2 with two other benches running; ai-edge-litert 2.3.0, --calib 64 --eval 64
--repeats 8):

    [eager attention]
    model                       mean cos  min cos size x fp32   ms b1 speed x fp32
    LiteRT fp32                   1.0000   1.0000       1.000    29.7         1.00
    LiteRT w8a8                   0.9939   0.9867       0.260     9.7         3.06
      (onnxruntime QDQ w8a8)      0.9905   0.9836
    LiteRT w8a16                  0.9996   0.9995       0.379   541.8         0.05
      (onnxruntime QDQ w8a16)     0.9996   0.9995

    [sdpa attention]
    model                       mean cos  min cos size x fp32   ms b1 speed x fp32
    LiteRT fp32                   1.0000   1.0000       1.000    30.4         1.00
    LiteRT w8a8                   0.9939   0.9868       0.260    11.0         2.77
      (onnxruntime QDQ w8a8)      0.9906   0.9836
    LiteRT w8a16                  0.9996   0.9995       0.379   526.0         0.06
      (onnxruntime QDQ w8a16)     0.9996   0.9995

The float export reproduces the float model (cosine 1.0000). Static w8a8 in LiteRT meets
the ONNX bar (mean ≥ 0.99) and is a little closer to float than onnxruntime's run of the same
QDQ model (the projection biases sit in int32 inside FULLY_CONNECTED instead of being added
after an 8-bit rounding), 0.26x the size (int8 embedding table and projections; the FFN-output
MatMuls, per-row dynamic in the ONNX model, become LiteRT hybrid FULLY_CONNECTED with int8
weights) and 2.8-3.1x faster than fp32 on XNNPACK. (Before that default, with the FFN-output
MatMuls float: 0.378x, 1.4-1.6x on a loaded machine, cosine 0.9943.) Before the int8
BATCH_MATMULs were given a zero-point-0 right-hand side, XNNPACK refused them and w8a8 ran at
0.6x fp32. 16x8 is near-lossless (0.9996) but ~20x slower than fp32: LiteRT has only
reference kernels for int16 FULLY_CONNECTED / BATCH_MATMUL (no XNNPACK path); its FFN-output
MatMuls stay float (w8a16 keeps them float), hence 0.379x.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

import edgequant as eq
from edgequant.analysis.latency import measure_interleaved
from edgequant.export.tflite import export_tflite
from edgequant.runtime.litert import LiteRTRunner
from edgequant_zoo.corpus import CALIBRATION_MODULES, EVALUATION_MODULES, docstring_corpus
from edgequant_zoo.minilm import export_minilm, tokenize

SEQ_LEN = 128
FIXED = {"sequence": SEQ_LEN}
RECIPES = ("w8a8", "w8a16")


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of (n, d) ``a`` to the same row of ``b``."""
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                       1e-12)  # (n,)


def ort_embed(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Sentence embeddings from onnxruntime (1 thread), 25 rows per run."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    n = len(feeds["input_ids"])
    return np.concatenate([s.run(None, {k: v[i:i + 25] for k, v in feeds.items()})[0]
                           for i in range(0, n, 25)])  # (n, 384)


def build(attn: str, d: Path, cal: dict) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """Float ONNX, then {label: .tflite} and {label: QDQ .onnx} for fp32 and each recipe."""
    src = export_minilm(d / f"minilm_{attn}.onnx", seq_len=SEQ_LEN, attn_implementation=attn)
    tfl = {"fp32": export_tflite(src, d / f"{attn}_fp32.tflite", fixed_dims=FIXED).path}
    qdq = {}
    for recipe in RECIPES:
        qm = eq.quantize(str(src), recipe, cal)
        qdq[recipe] = qm.save(d / f"{attn}_{recipe}.onnx")
        tfl[recipe] = qm.save(d / f"{attn}_{recipe}.tflite", fixed_dims=FIXED)
    return src, tfl, qdq


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--attn", default="eager,sdpa", help="attention exports, comma-separated")
    args = ap.parse_args(argv)
    cal = tokenize(docstring_corpus(args.calib, modules=CALIBRATION_MODULES), SEQ_LEN)
    ev = tokenize(docstring_corpus(args.eval, modules=EVALUATION_MODULES), SEQ_LEN)
    one = {k: v[:1] for k, v in ev.items()}
    print(f"all-MiniLM-L6-v2, {args.calib} calibration / {args.eval} evaluation docstrings "
          f"(disjoint modules), {SEQ_LEN} tokens; LiteRT 1 thread, batch 1")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for attn in args.attn.split(","):
            src, tfl, qdq = build(attn, d, cal)
            ref = ort_embed(src, ev)  # (n, 384) the float model
            runners = {k: LiteRTRunner(p, threads=1) for k, p in tfl.items()}
            ms = measure_interleaved({k: (lambda r=r: r.run(one)) for k, r in runners.items()},
                                     repeats=args.repeats)
            size0 = tfl["fp32"].stat().st_size
            print(f"\n[{attn} attention]")
            print(f"{'model':<26} {'mean cos':>9} {'min cos':>8} {'size x fp32':>11} "
                  f"{'ms b1':>7} {'speed x fp32':>12}")
            for k, p in tfl.items():
                c = row_cosines(ref, runners[k].run(ev)[0])
                print(f"{'LiteRT ' + k:<26} {c.mean():>9.4f} {c.min():>8.4f} "
                      f"{p.stat().st_size / size0:>11.3f} {ms[k]:>7.1f} {ms['fp32'] / ms[k]:>12.2f}",
                      flush=True)
                if k in qdq:
                    c = row_cosines(ref, ort_embed(qdq[k], ev))
                    print(f"{'  (onnxruntime QDQ ' + k + ')':<26} {c.mean():>9.4f} {c.min():>8.4f}",
                          flush=True)


if __name__ == "__main__":
    main()
