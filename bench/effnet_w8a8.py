"""EfficientNet-Lite0 (real ImageNet weights) in w8a8: edgequant vs onnxruntime's quantizer.

Side by side in one run, on real photo crops (calibration and evaluation from disjoint
photos, ``edgequant_zoo.photos``): edgequant ``w8a8`` and onnxruntime ``quantize_static``
(QDQ, per-channel int8 weights, uint8 activations, after ``quant_pre_process`` as its docs
recommend), both calibrated on the same crops. Prints, per model: top-1 agreement with the
float model, mean output cosine, biases left float, and the latency ratio to float in
onnxruntime at batch 1 (1 thread, interleaved rounds, median).

Run: ``.venv/bin/python bench/effnet_w8a8.py [--calib 64] [--eval 128] [--repeats 30]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from peers import ort_quantize_static

import edgequant as eq
from edgequant.analysis.latency import measure_interleaved
from edgequant.analysis.metrics import cosine, top1_agreement
from edgequant_zoo.efficientnet import export_efficientnet_lite0
from edgequant_zoo.photos import calibration_crops, evaluation_crops


def float_biases(path: Path) -> int:
    """Conv/Gemm biases stored float (not behind a DequantizeLinear of int32)."""
    m = onnx.load(str(path))
    floats = {t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return sum(1 for n in m.graph.node
               if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] in floats)


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--eval", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    cal, ev = calibration_crops(args.calib), evaluation_crops(args.eval)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = export_efficientnet_lite0(d / "effnet_lite0.onnx")
        qm = eq.quantize(str(src), "w8a8", calibration={"input": cal})
        ours = qm.save(d / "edgequant_w8a8.onnx")
        theirs = ort_quantize_static(src, d / "ort_w8a8.onnx", cal)
        paths = {"fp32": src, "edgequant w8a8": ours, "onnxruntime quantize_static": theirs}
        sess = {k: session(p) for k, p in paths.items()}
        outs = {k: s.run(None, {"input": ev})[0] for k, s in sess.items()}
        one = ev[:1]
        rounds = [measure_interleaved({k: (lambda s=s: s.run(None, {"input": one}))
                                       for k, s in sess.items()}, repeats=args.repeats)
                  for _ in range(3)]  # three interleaved rounds: the median of each model
        ms = {k: float(np.median([r[k] for r in rounds])) for k in paths}
        fits = [n for n in qm.report["notes"] if "raised so bias" in n]
        print(f"EfficientNet-Lite0, {args.calib} calibration / {args.eval} evaluation crops "
              "(disjoint photos), onnxruntime 1 thread, batch 1")
        print(f"{'model':<30} {'top-1 agree':>11} {'cosine':>8} {'float biases':>12} "
              f"{'ms':>7} {'x fp32 speed':>12}")
        for k in paths:
            agree = top1_agreement(outs["fp32"], outs[k])
            cos = cosine(outs["fp32"], outs[k])
            print(f"{k:<30} {agree:>11.3f} {cos:>8.4f} {float_biases(paths[k]):>12d} "
                  f"{ms[k]:>7.2f} {ms['fp32'] / ms[k]:>12.2f}")
        print(f"edgequant raised weight scales in {len(fits)} layer(s) so their int32 bias fits")
        ratio = ms["edgequant w8a8"] / ms["onnxruntime quantize_static"]
        print(f"edgequant / onnxruntime latency: {ratio:.3f}")


if __name__ == "__main__":
    main()
