"""compare(): sizes, fidelity and accuracy against numbers computed directly from onnxruntime."""

from __future__ import annotations

import math
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgequant.analysis.compare import ROW_FIELDS, compare, rows_to_json
from edgequant.runtime.batching import run_batched
from edgequant.runtime.runners import open_runner

#: Relative tolerance between compare()'s metrics and the same formulas evaluated here: both
#: reduce the same ORT outputs in float64, only the summation order differs.
METRIC_RTOL = 1e-9
#: The int8 model must be at least this much smaller (int8 weights are 4× smaller than
#: float32; scales, zero points and Q/DQ nodes cost a little).
MIN_INT8_SIZE_RATIO = 3.0
N_EVAL = 300
N_TFLITE = 100
#: int8 vs float argmax agreement on digits (measured 0.998 over all 1797 images).
MIN_INT8_AGREEMENT = 0.97
#: float32 tolerance between batch-1 and batch-N runs of the same model: onnxruntime's GEMM
#: may block the product differently per batch size, changing the summation order.
BATCH_RTOL, BATCH_ATOL = 1e-5, 1e-6


def _ort(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]


@pytest.fixture(scope="module")
def rows(digits_models):
    m = digits_models
    x, y = m["x"][:N_EVAL], m["y"][:N_EVAL]
    return compare(m["fp32"], [m["int8"]], {"x": x}, labels=y, batch_size=N_EVAL,
                   latency_repeats=0)


def test_rows_sizes_match_files(rows, digits_models):
    ref, q = rows
    assert ref.model == "digits_fp32.onnx" and q.model == "digits_int8.onnx"
    assert ref.bytes == os.path.getsize(digits_models["fp32"])
    assert q.bytes == os.path.getsize(digits_models["int8"])
    assert q.size_ratio == ref.bytes / q.bytes
    assert q.size_ratio > MIN_INT8_SIZE_RATIO
    assert ref.size_ratio == 1.0


def test_reference_row_is_identity(rows):
    ref = rows[0]
    assert ref.sqnr_db == math.inf
    assert ref.cosine == pytest.approx(1.0, abs=1e-12)
    assert ref.top1_agreement == 1.0
    assert ref.latency_ms is None and ref.speedup is None  # latency_repeats=0 skips timing


def test_metrics_equal_hand_computation(rows, digits_models):
    m = digits_models
    x, y = m["x"][:N_EVAL], m["y"][:N_EVAL]
    r = _ort(m["fp32"], x).astype(np.float64)  # (N, 10)
    t = _ort(m["int8"], x).astype(np.float64)  # (N, 10)
    cos = np.mean([a @ b / np.sqrt((a @ a) * (b @ b)) for a, b in zip(r, t, strict=True)])
    sqnr = 10 * np.log10((r**2).sum() / ((r - t) ** 2).sum())
    ref, q = rows
    assert q.cosine == pytest.approx(cos, rel=METRIC_RTOL)
    assert q.sqnr_db == pytest.approx(sqnr, rel=METRIC_RTOL)
    assert q.top1_agreement == np.count_nonzero(r.argmax(1) == t.argmax(1)) / N_EVAL
    assert ref.accuracy == np.count_nonzero(r.argmax(1) == y) / N_EVAL
    assert q.accuracy == np.count_nonzero(t.argmax(1) == y) / N_EVAL
    assert ref.accuracy > 0.9  # the fixture's classifier is real, so accuracy is meaningful


def test_rows_to_json_fields(rows):
    js = rows_to_json(rows)
    assert [list(d) for d in js] == [list(ROW_FIELDS)] * 2
    assert set(ROW_FIELDS) == {"model", "bytes", "size_ratio", "accuracy", "top1_agreement",
                               "cosine", "sqnr_db", "latency_ms", "speedup"}


def test_latency_interleaved_and_reference_speedup_one(digits_models):
    m = digits_models
    rows = compare(m["fp32"], [m["int8"]], {"x": m["x"][:8]}, latency_repeats=3,
                   latency_warmup=1)
    assert rows[0].speedup == 1.0
    for r in rows:
        assert r.latency_ms is not None and r.latency_ms > 0
    assert rows[1].speedup == rows[0].latency_ms / rows[1].latency_ms
    assert rows[0].accuracy is None  # no labels


def test_fixed_batch_one_model_runs_sample_by_sample(digits_models, digits_cnn_builder, tmp_path):
    """A model whose batch dim is fixed at 1 gives the same outputs as the dynamic one."""
    p = tmp_path / "digits_b1.onnx"
    onnx.save(digits_cnn_builder(batch=1), p)
    x = digits_models["x"][:7]
    runner = open_runner(p)
    assert runner.input_shapes["x"][0] == 1
    got = run_batched(runner, {"x": x}, batch_size=4)[0]  # (7, 10)
    want = _ort(digits_models["fp32"], x)
    np.testing.assert_allclose(got, want, rtol=BATCH_RTOL, atol=BATCH_ATOL)
    rows = compare(digits_models["fp32"], [p], {"x": x}, batch_size=4, latency_repeats=0)
    assert rows[1].top1_agreement == 1.0


def test_bytes_include_external_data(digits_models, tmp_path):
    model = onnx.load(digits_models["fp32"])
    p = tmp_path / "ext.onnx"
    onnx.save(model, p, save_as_external_data=True, location="ext.onnx.data",
              size_threshold=0)
    rows = compare(digits_models["fp32"], [p], {"x": digits_models["x"][:4]}, latency_repeats=0)
    want = os.path.getsize(p) + os.path.getsize(tmp_path / "ext.onnx.data")
    assert rows[1].bytes == want
    assert rows[1].sqnr_db == math.inf  # same weights, same outputs


def test_label_count_mismatch_is_an_error(digits_models):
    m = digits_models
    with pytest.raises(ValueError, match="labels"):
        compare(m["fp32"], [], {"x": m["x"][:5]}, labels=m["y"][:4], latency_repeats=0)


def test_tflite_models_compare_against_litert_run_directly(digits_models):
    """int8 .tflite with float I/O and with int8 I/O: compare's numbers equal metrics of
    LiteRT outputs computed here (LiteRT invoked sample by sample, I/O converted by hand)."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    from edgequant.export.tflite.export import export_tflite

    m = digits_models
    x, y = m["x"][:N_TFLITE], m["y"][:N_TFLITE]
    paths = {io: m["dir"] / f"digits_{io}io.tflite" for io in ("float", "int8")}
    for io, p in paths.items():
        export_tflite(m["int8"], p, io=io)
    rows = compare(m["fp32"], list(paths.values()), {"x": x}, labels=y, latency_repeats=2,
                   latency_warmup=0)
    r = _ort(m["fp32"], x).astype(np.float64)
    for row, p in zip(rows[1:], paths.values(), strict=True):
        it = Interpreter(model_path=str(p))
        it.allocate_tensors()
        (i,), (o,) = it.get_input_details(), it.get_output_details()
        outs = []
        for k in range(len(x)):
            xi = x[k : k + 1]
            if i["dtype"] != np.float32:  # int8 I/O: quantize with the tensor's own qparams
                s, z = i["quantization"]
                xi = np.clip(np.rint(xi / np.float32(s)) + z, -128, 127).astype(i["dtype"])
            it.set_tensor(i["index"], xi)
            it.invoke()
            yo = it.get_tensor(o["index"])
            if o["dtype"] != np.float32:  # DequantizeLinear: float32 (q − zp) · scale
                s, z = o["quantization"]
                yo = (yo.astype(np.int32) - z).astype(np.float32) * np.float32(s)
            outs.append(yo.astype(np.float64))
        t = np.concatenate(outs)  # (N, 10)
        assert row.bytes == os.path.getsize(p)
        assert row.sqnr_db == pytest.approx(
            10 * np.log10((r**2).sum() / ((r - t) ** 2).sum()), rel=METRIC_RTOL)
        assert row.accuracy == np.count_nonzero(t.argmax(1) == y) / N_TFLITE
        assert row.top1_agreement > MIN_INT8_AGREEMENT
        assert row.latency_ms > 0


def test_edgequant_integer_io_model_matches_its_float_io_twin(digits_models):
    """``quantize(io="uint8")`` records I/O qparams in ``edgequant.io``; the runner quantizes
    the float feeds and dequantizes the outputs with them, so the integer-I/O model's outputs
    equal (bit for bit) those of the same model with float I/O, whose Q/DQ do the same
    arithmetic inside onnxruntime."""
    from edgequant.ptq.quantizer import quantize

    m = digits_models
    calib = {"x": m["x"][:64]}
    paths = {}
    for io in ("float", "uint8"):
        qm = quantize(m["fp32"], "w8a8", calibration=calib, io=io)
        paths[io] = qm.save(m["dir"] / f"eq_w8a8_{io}io.onnx")
    runners = {io: open_runner(p) for io, p in paths.items()}
    assert runners["uint8"].input_dtypes["x"] == np.uint8
    assert set(runners["uint8"].io) == {"x", "logits"}
    x = m["x"][:N_EVAL]
    outs = {io: run_batched(r, {"x": x})[0] for io, r in runners.items()}
    np.testing.assert_array_equal(outs["uint8"], outs["float"])
    rows = compare(m["fp32"], [paths["float"], paths["uint8"]], {"x": x}, latency_repeats=0)
    assert rows[1].sqnr_db == rows[2].sqnr_db and rows[1].cosine == rows[2].cosine
