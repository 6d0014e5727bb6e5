"""1-D Conv / Split / ConvTranspose models on LiteRT: fidelity to onnxruntime, and a trained
keyword-spotting CNN's accuracy, size and latency.

Part 1 — for each test model (``tests/tflite/conv1d_split_deconv_models.py``: KWS CNNs, a
gated MLP, a U-Net decoder step, a 1-D layout stress model), PTQ w8a8 and w8a16 with
``edgequant.quantize`` on 16 inputs, export, then on ``--samples`` fresh inputs: LiteRT
(builtin, XNNPACK) vs onnxruntime on the same QDQ model in output LSB (max, share of values
> 0 and > 1 LSB) and ``verify_tflite(isolate_integer=True)`` (reference vs LiteRT).

Part 2 — the KWS CNN trained on sklearn's digits (8 rows = 8 channels × 8 steps): test
accuracy of the float model, the int8 QDQ model on onnxruntime and the int8 ``.tflite`` on
LiteRT; file sizes; LiteRT median latency at batch 1, fp32 vs int8 ``.tflite``, interleaved.

    .venv/bin/python bench/tflite_conv1d_split_deconv.py [--samples 64] [--repeats 200]

Measured 2026-12-02 (ai-edge-litert 2.3.0, onnxruntime CPU, 2 shared cores at load ~13):

* w8a8, 64 inputs: max 1 LSB on the KWS models (kws, kws_relu, kws_pool; 5–20 % of values
  differ by 1), ≤ 3 LSB on mixer / decoder / layout1d with ≤ 0.05 % of values above 1 LSB;
  the decoder on XNNPACK (fp32 requantization like onnxruntime) 0 LSB. ``verify``
  (reference vs LiteRT, isolate_integer): 0 LSB on every w8a8 model.
* w8a16: KWS ≤ 2 int16 LSB, decoder ≤ 3; mixer up to 884 and layout1d up to 83 int16 LSB
  on a few values — not the new ops: edgequant fuses MatMul + bias Add into one
  FULLY_CONNECTED (``patterns_bias``), while the QDQ graph clips the MatMul result to its
  own calibrated range before the Add; inputs beyond the 16 calibration samples saturate
  that range on onnxruntime only (LiteRT is then the closer one to the float model: a
  plain Linear at w8a16 on the same inputs, LiteRT vs float 0.058, onnxruntime vs float
  0.26). ``verify`` 0 LSB where the reference models every op (int16 LOGISTIC is not).
* KWS on digits (397 test images): float 95.72 %, int8 QDQ on onnxruntime 95.97 %, int8
  ``.tflite`` on LiteRT 95.97 % on both kernel paths (same class as onnxruntime on 99.50 %
  builtin, 100 % XNNPACK); 15,872 B fp32 vs 11,176 B int8; batch-1 latency on this tiny
  model (≈ 10 µs) is dominated by per-op overhead: int8 1.11x fp32 on the builtin kernels,
  1.42x on XNNPACK (slower, not faster).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

# the model definitions live with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "tflite"))
from conv1d_split_deconv_models import MODELS, build, trained_digits_kws

import edgequant
from edgequant.analysis.latency import measure_interleaved
from edgequant.export.tflite import export_tflite
from edgequant.export.tflite.builder import load_model
from edgequant.runtime.litert import LiteRTRunner
from edgequant.runtime.verify_tflite import verify_tflite
from edgequant.torch import export_onnx


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = model.graph.input[0].name
    return np.concatenate([sess.run(None, {name: xi[None]})[0] for xi in x])


def _out_scale(path: Path) -> float:
    sub = load_model(path.read_bytes()).subgraphs[0]
    out = int(sub.outputs[0])
    op = next(o for o in sub.operators if out in [int(i) for i in o.outputs])
    return float(sub.tensors[int(op.inputs[0])].quantization.scale[0])


def fidelity(samples: int, root: Path) -> None:
    """Part 1 (module docstring)."""
    print(f"\nLiteRT vs onnxruntime (same QDQ model), {samples} inputs, output LSB")
    print(f"{'model':10}{'recipe':8}{'kernels':9}{'max':>5}{'>0 LSB':>9}{'>1 LSB':>9}"
          f"{'verify':>8}  float nodes")
    for name in MODELS:
        model, calib = build(name)
        shape = calib.shape[1:]
        x = np.random.default_rng(5).standard_normal((samples, *shape)).astype(np.float32)
        iname = model.graph.input[0].name
        for recipe in ("w8a8", "w8a16"):
            qm = edgequant.quantize(model, recipe, calibration={iname: calib})
            res = export_tflite(qm.model, root / f"{name}_{recipe}.tflite")
            try:
                rep = verify_tflite(res.path, {iname: x[:8]}, isolate_integer=True)
                verdict = f"{rep.max_lsb:g}"
            except Exception as exc:  # e.g. int16 LOGISTIC: not modelled by the reference
                verdict = "n/a"
                print(f"  ({name} {recipe}: verify not run: {str(exc)[-70:]})")
            scale, want = _out_scale(res.path), _ort(qm.model, x)
            for kernels in ("builtin", "xnnpack"):
                got = LiteRTRunner(res.path, xnnpack=kernels == "xnnpack").run({iname: x})[0]
                lsb = np.rint(np.abs(got - want) / scale)  # (samples, …)
                print(f"{name:10}{recipe:8}{kernels:9}{lsb.max():>5.0f}"
                      f"{np.mean(lsb > 0):>9.2%}{np.mean(lsb > 1):>9.3%}{verdict:>8}  "
                      f"{len(res.float_nodes)}")


def kws_digits(repeats: int, root: Path) -> None:
    """Part 2 (module docstring)."""
    module, (x_tr, _, x_te, y_te) = trained_digits_kws()
    model = export_onnx(module, torch.zeros(1, 8, 8))
    name = model.graph.input[0].name
    qm = edgequant.quantize(model, "w8a8", calibration={name: x_tr[:128]})
    f32 = export_tflite(model, root / "kws_fp32.tflite")
    i8 = export_tflite(qm.model, root / "kws_int8.tflite")
    print(f"\nKWS CNN on sklearn digits ({len(x_te)} test images, 8 channels × 8 steps)")
    print(f"  float (onnxruntime)        accuracy {np.mean(_ort(model, x_te).argmax(-1) == y_te):.2%}")
    ort_pred = _ort(qm.model, x_te).argmax(-1)
    print(f"  int8 QDQ (onnxruntime)     accuracy {np.mean(ort_pred == y_te):.2%}")
    for kernels in ("builtin", "xnnpack"):
        pred = LiteRTRunner(i8.path, xnnpack=kernels == "xnnpack").run({name: x_te})[0].argmax(-1)
        print(f"  int8 .tflite ({kernels:7})    accuracy {np.mean(pred == y_te):.2%}, "
              f"same class as onnxruntime {np.mean(pred == ort_pred):.2%}")
    print(f"  size: fp32 {f32.size_bytes} B, int8 {i8.size_bytes} B; int8 ops {i8.ops}")
    x1 = {name: x_te[:1]}
    for kernels in ("builtin", "xnnpack"):
        runners = {m: LiteRTRunner(p, 1, xnnpack=kernels == "xnnpack")
                   for m, p in (("fp32", f32.path), ("int8", i8.path))}
        ms = measure_interleaved({m: (lambda r=r: r.run(x1)) for m, r in runners.items()},
                                 repeats=repeats)
        print(f"  LiteRT {kernels:7} 1 thread, batch 1: fp32 {ms['fp32']:.4f} ms, "
              f"int8 {ms['int8']:.4f} ms ({ms['int8'] / ms['fp32']:.2f}x)")


def main() -> None:
    """Run both parts and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fidelity(args.samples, Path(tmp))
        kws_digits(args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
