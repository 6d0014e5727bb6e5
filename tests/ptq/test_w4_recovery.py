"""The w4a8 recovery pipeline: AdaRound's second-moment loss and dense kernels against numpy,
its integers on {⌊w/s⌋, ⌊w/s⌋ + 1} with a layer error at most RTN's, bias correction after
AdaRound lowering the mean output shift on held-out data (onnxruntime), and the full recovered
mix (clip search, int8 first/last/depthwise, AdaRound, bias correction after) verifying at
0 LSB in onnxruntime and LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from small_nets import conv_chain, images

import edgequant as eq
from edgequant.recipes import get_recipe
from edgequant.runtime.sessions import ort_session

torch = pytest.importorskip("torch")

FAST = {"adaround": True, "adaround_iters": 300, "adaround_seconds_per_layer": 0,
        "adaround_rows": 1024}


@pytest.mark.parametrize("g, o, k", [(1, 6, 20), (12, 1, 9), (4, 3, 5)])
def test_row_kernels_match_numpy(g, o, k):
    from edgequant.ptq.recovery.adaround_layer import rows_times

    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(7, g, k)), rng.normal(size=(g, o, k))
    want = np.einsum("rgk,gok->rgo", x, w)  # float64 numpy
    got = rows_times(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups, k_in", [(8, 1), (1, 8)])  # depthwise (K=9) / regular (K=72)
def test_adaround_layer_integers_and_error(groups, k_in):
    from edgequant.ptq.recovery.adaround_layer import adaround_layer
    from edgequant.ptq.recovery.layer_rows import Layer
    from edgequant.ptq.recovery.weight_clip import clip_search
    from edgequant.recipes.builtin import weight_spec

    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.3, (8, k_in, 3, 3)).astype(np.float32)
    layer = Layer("c", "Conv", "x", "w", "conv", groups, w.shape)
    z = rng.normal(0, 1, (1024, groups, layer.k))
    xf = (0.5 + z + 2 * z.mean(-1, keepdims=True)).astype(np.float32)  # correlated, as pixels
    xq = np.round(xf * 16) / 16  # the input as an 8-bit-ish quantized model sees it
    qp, _ = clip_search(w, weight_spec(4))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as adaround() runs it (threads fight on a shared machine)
    try:
        res = adaround_layer(layer, w, qp, xq, xf, iters=400, seconds=0, seed=0)
    finally:
        torch.set_num_threads(threads)
    floor = np.floor(w / qp.scale[:, None, None, None])
    assert np.all((res.ints == floor) | (res.ints == floor + 1) | (np.abs(res.ints) == 7))
    # the layer error on all rows (numpy, float64) is at most round-to-nearest's
    w_gok = w.reshape(groups, 8 // groups, layer.k).astype(np.float64)

    def err(q):
        wq = (q * qp.scale[:, None, None, None]).reshape(w_gok.shape)
        d = np.einsum("rgk,gok->rgo", xq, wq) - np.einsum("rgk,gok->rgo", xf, w_gok)
        return float((d ** 2).sum((1, 2)).mean())

    rtn = np.clip(np.rint(w / qp.scale[:, None, None, None]), -7, 7)
    assert err(res.ints.astype(np.float64)) <= err(rtn) * (1 + 1e-6)
    np.testing.assert_allclose(res.mse_rtn, err(rtn), rtol=1e-3)
    assert not res.kept_rtn and res.mse_adaround < 0.95 * res.mse_rtn
    assert res.undecided < 0.05  # the regulariser drove h(V) to 0 / 1


def _mean_shift(qmodel, fmodel, x: np.ndarray) -> float:
    """Mean over output channels of |E[quantized − float]| on ``x``, in onnxruntime."""
    q = ort_session(qmodel).run(None, {"x": x})[0]
    f = ort_session(fmodel).run(None, {"x": x})[0]
    return float(np.mean(np.abs((q - f).mean(axis=0))))


def test_bias_correction_after_adaround_lowers_mean_output_shift():
    m = conv_chain("Relu", seed=2)
    cal, held = images(64, 10) + 0.5, images(256, 11) + 0.5  # disjoint draws
    base = get_recipe("w4a8").with_options(**FAST, weight_clip="none")
    plain = eq.quantize(m, base.with_options(adaround_bias_correction="none"), {"x": cal})
    fixed = eq.quantize(m, base.with_options(adaround_bias_correction="empirical"), {"x": cal})
    assert "bias_correction" not in plain.report["adaround"]
    assert fixed.report["adaround"]["bias_correction"]["layers"] == 4
    before, after = _mean_shift(plain.model, m, held), _mean_shift(fixed.model, m, held)
    assert after < 0.8 * before, (before, after)


def test_full_w4_recovery_verifies_in_onnxruntime_and_litert(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgequant.runtime.verify_tflite import verify_tflite

    m = conv_chain("Relu", seed=4)
    cal, x = images(32, 20) + 0.5, images(16, 21) + 0.5
    rec = get_recipe("w4a8").with_options(**FAST, w4_keep_int8="first_last_depthwise")
    qm = eq.quantize(m, rec, calibration={"x": cal})
    assert qm.report["recovery"]["weight_clip"]["weights"] == 4
    assert qm.report["adaround"]["bias_correction"]["layers"] == 4
    path = qm.save(tmp_path / "w4.onnx")
    assert eq.verify(str(path), {"x": x}).max_lsb == 0
    assert eq.verify(str(qm.save(tmp_path / "w4_qop.onnx", format="qop")), {"x": x}).max_lsb == 0
    lite = verify_tflite(qm.save(tmp_path / "w4.tflite"), {"x": x})
    assert lite.max_lsb == 0, lite.to_dict()
