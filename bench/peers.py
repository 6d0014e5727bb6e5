"""The peer quantizers the benches measure edgequant against, run the way their docs say.

onnxruntime static: ``quant_pre_process`` (shape inference + optimization, as its docs
recommend) then ``quantize_static`` in QDQ, per-channel weights, uint8 activations;
onnxruntime dynamic: ``quantize_dynamic`` with per-channel int8 weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ort_quantize_static(src: Path, dst: Path, cal: np.ndarray | dict[str, np.ndarray], *,
                        batch: int = 1, weight_bits: int = 8) -> Path:
    """onnxruntime's recommended static flow on ``cal`` (one array for input ``input``, or a
    dict input → array), calibration batches of ``batch`` samples, int8 or int4 weights."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = cal if isinstance(cal, dict) else {"input": cal}
    n = len(next(iter(feeds.values())))
    pre = dst.with_name(dst.stem + "_pre.onnx")
    try:
        quant_pre_process(str(src), str(pre))
    except Exception:  # its symbolic shape inference gives up on some dynamo graphs (SDPA)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{k: v[i:i + batch] for k, v in feeds.items()}
                            for i in range(0, n, batch)])

        def get_next(self):
            return next(self.it, None)

    weights = {8: QuantType.QInt8, 4: QuantType.QInt4}[weight_bits]
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=weights)
    return dst


def ort_quantize_dynamic(src: Path, dst: Path) -> Path:
    """onnxruntime's dynamic quantizer, per-channel int8 weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return dst
