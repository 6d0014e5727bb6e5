"""onnxruntime latency of QDQ vs lowered (QOperator) models, interleaved in one process.

Models: the MNIST tutorial CNN (Conv 12 3×3 + ReLU → MaxPool 2 → Flatten → Dense 10,
trained for a couple of epochs) and a bigger conv net (VGG-style, seeded random weights),
quantized w8a8 with ``edgequant.quantize`` (onnxruntime's ``quantize_static`` if that is
not importable), then lowered with ``lower_qop.lower``.

Prints, per model, batch size and graph optimization level: median latency of each model
(runs alternate QDQ / lowered so machine noise hits both alike), the ratio lowered / QDQ
(< 1 means the lowered model is faster) and the argmax agreement of the two on test images.

    .venv/bin/python bench/lowered_speed.py [--repeats 200] [--threads 1] [--levels all,basic]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

from edgequant.export.qop.lower import lower

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,  # default: ORT fuses QDQ itself
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,  # no QDQ fusion: runs the float path
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
N_CALIB = 64
N_AGREE = 500


def _float_models(split) -> dict[str, onnx.ModelProto]:
    import torch

    from edgequant_zoo.convnets import VGGNet, build_seeded
    from edgequant_zoo.tutorial_cnn import export_onnx, train_tutorial_cnn

    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, module in (("mnist_cnn", train_tutorial_cnn(split, epochs=2)),
                             ("vgg_mnist", build_seeded(VGGNet).eval())):
            path = export_onnx(module, os.path.join(d, f"{name}.onnx"), torch.zeros(1, 1, 28, 28))
            out[name] = onnx.load(path)
    return out


def _quantize(model: onnx.ModelProto, calib: np.ndarray) -> tuple[onnx.ModelProto, str]:
    name = model.graph.input[0].name
    try:
        from edgequant import quantize
    except ImportError:
        quantize = None
    if quantize is not None:
        return quantize(model, "w8a8", {name: calib}).model, "edgequant.quantize"
    from onnxruntime import quantization as oq

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self._it = iter({name: calib[i:i + 1]} for i in range(len(calib)))

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(model, src)
        oq.quantize_static(src, dst, Reader(), quant_format=oq.QuantFormat.QDQ, per_channel=True,
                           activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8)
        return onnx.load(dst), "onnxruntime quantize_static"


def _session(model: onnx.ModelProto, level: str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = LEVELS[level]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def interleaved_medians(sessions: list[ort.InferenceSession], feeds: dict, repeats: int,
                        warmup: int = 10) -> list[tuple[float, float]]:
    """(median, min) seconds per run of each session, alternating sessions run by run.

    The order flips every round (ABBA...): on this machine the first session of a round
    was measured up to 4× slower than the second whichever model it was, so a fixed order
    would bias the ratio.
    """
    times: list[list[float]] = [[] for _ in sessions]
    for i in range(warmup + repeats):
        order = list(enumerate(sessions))
        for k, sess in order if i % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            sess.run(None, feeds)
            if i >= warmup:
                times[k].append(time.perf_counter() - t0)
    return [(float(np.median(t)), float(np.min(t))) for t in times]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per (model, level, batch)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200, help="timed runs per model at batch 1")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--levels", default="all,basic", help=f"comma list of {sorted(LEVELS)}")
    args = ap.parse_args(argv)
    from edgequant_zoo.mnist import load_mnist

    split = load_mnist()
    x_test = split.x_test[:N_AGREE]
    print(f"onnxruntime {ort.__version__}, threads={args.threads}, median of interleaved runs")
    print("(min: the least-disturbed run; on a shared machine it tracks the kernels' cost)")
    print(f"{'model':<10} {'level':<6} {'batch':>5} {'qdq ms':>9} {'lowered ms':>11} "
          f"{'lowered/qdq':>12} {'qdq min':>9} {'lowered min':>12} {'ratio of min':>13}")
    for name, model in _float_models(split).items():
        qdq, how = _quantize(model, split.x_train[:N_CALIB])
        res = lower(qdq)
        in_name = qdq.graph.input[0].name
        for level in args.levels.split(","):
            s_qdq, s_low = _session(qdq, level, args.threads), _session(res.model, level,
                                                                         args.threads)
            for batch in (1, 64):
                feeds = {in_name: np.ascontiguousarray(x_test[:batch])}
                reps = args.repeats if batch == 1 else max(20, args.repeats // 4)
                (t_qdq, m_qdq), (t_low, m_low) = interleaved_medians([s_qdq, s_low], feeds, reps)
                print(f"{name:<10} {level:<6} {batch:>5} {t_qdq * 1e3:>9.3f} {t_low * 1e3:>11.3f} "
                      f"{t_low / t_qdq:>12.3f} {m_qdq * 1e3:>9.3f} {m_low * 1e3:>12.3f} "
                      f"{m_low / m_qdq:>13.3f}")
        low = _session(res.model, "all", args.threads).run(None, {in_name: x_test})[0]
        ops = sorted({n.op_type for n in res.model.graph.node})
        print(f"  {name}: QDQ by {how}; lowered ops {ops}; left in float {res.float_nodes}")
        for ref_level in ("all", "none"):  # none = the QDQ float path, as written
            ref = _session(qdq, ref_level, args.threads).run(None, {in_name: x_test})[0]
            print(f"  {name}: vs QDQ at level {ref_level}: argmax agreement "
                  f"{np.mean(ref.argmax(1) == low.argmax(1)):.4f} on {len(x_test)} images, "
                  f"max |diff| {np.abs(ref - low).max():.3g}, "
                  f"elements equal {np.mean(ref == low):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
