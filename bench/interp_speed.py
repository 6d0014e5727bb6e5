"""Reference interpreter vs onnxruntime: wall time per batch, printed as ratios (information
only; nothing is asserted).

    python bench/interp_speed.py [--batch 256] [--repeats 5] [--minilm]

Models: the tutorial MNIST CNN (float, QDQ w8a8, and its QOperator lowering) and, with
``--minilm``, all-MiniLM-L6-v2 float (sequence length 32; the export takes about a minute).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgequant import quantize
from edgequant.export.qop.lower import lower_to_qop
from edgequant.interp import Interpreter


def best_time(fn, repeats: int) -> float:
    """Best of ``repeats`` wall times (seconds) after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def compare(name: str, model: onnx.ModelProto, feeds: dict[str, np.ndarray], repeats: int):
    """Print interpreter and onnxruntime times for one model and their ratio."""
    interp = Interpreter(model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    t_ref = best_time(lambda: interp.run(feeds), repeats)
    t_ort = best_time(lambda: sess.run(None, feeds), repeats)
    print(f"{name:28s} reference {t_ref * 1e3:9.1f} ms   onnxruntime {t_ort * 1e3:8.2f} ms   "
          f"ratio {t_ref / t_ort:7.1f}x")


def mnist_models(tmp: Path, batch: int):
    from edgequant_zoo.mnist import load_mnist
    from edgequant_zoo.onnx_export import export_onnx
    from edgequant_zoo.tutorial_cnn import train_tutorial_cnn

    split = load_mnist()
    net = train_tutorial_cnn(split, epochs=2)
    import torch

    path = export_onnx(net, tmp / "cnn.onnx", torch.zeros(1, 1, 28, 28), input_names=("input",))
    float_model = onnx.load(path)
    qdq = quantize(float_model, "w8a8", calibration={"input": split.x_train[:256]}).model
    feeds = {"input": split.x_test[:batch].astype(np.float32)}
    return {"mnist cnn float": float_model, "mnist cnn QDQ w8a8": qdq,
            "mnist cnn QOperator": lower_to_qop(qdq)}, feeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--minilm", action="store_true", help="also time all-MiniLM-L6-v2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        models, feeds = mnist_models(tmp, args.batch)
        print(f"batch {args.batch}, best of {args.repeats}")
        for name, model in models.items():
            compare(name, model, feeds, args.repeats)
        if args.minilm:
            from edgequant_zoo.minilm import export_minilm, tokenize

            path = export_minilm(tmp / "minilm.onnx", seq_len=32)
            texts = [f"sentence number {i} for the benchmark" for i in range(16)]
            compare("all-MiniLM-L6-v2 float", onnx.load(path), tokenize(texts, 32),
                    args.repeats)


if __name__ == "__main__":
    main()
