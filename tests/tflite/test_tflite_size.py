"""File overhead of the demo (MNIST tutorial CNN) int8 .tflite beyond its raw payload."""

from __future__ import annotations

import onnx

from edgequant.export.tflite import export_tflite
from edgequant.export.tflite.builder import load_model

#: Allowed bytes beyond raw weight / bias / scale / zero-point bytes (the brief's budget).
MAX_OVERHEAD_BYTES = 10 * 1024


def payload_bytes(data: bytes) -> int:
    """Raw constant bytes (buffers) + 4 bytes per scale + 8 per zero point in the file."""
    m = load_model(data)
    raw = sum(len(b.data) for b in m.buffers if b.data is not None)
    for t in m.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.scale is not None:
            raw += 4 * len(q.scale) + 8 * len(q.zeroPoint)
    return raw


def test_demo_int8_overhead(tfl_models, tmp_path):
    res = export_tflite(onnx.load(tfl_models["mnist"].qdq_path), tmp_path / "m.tflite")
    data = res.path.read_bytes()
    overhead = len(data) - payload_bytes(data)
    print(f"mnist int8: {len(data)} bytes, payload {payload_bytes(data)}, overhead {overhead}")
    assert 0 < overhead <= MAX_OVERHEAD_BYTES
    # int8 weights: the file is ~4x smaller than the fp32 export
    f32 = export_tflite(onnx.load(tfl_models["mnist"].float_path), tmp_path / "f.tflite")
    assert len(data) < 0.3 * f32.size_bytes
