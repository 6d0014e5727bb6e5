"""Sequential AdaRound and QDrop: each layer's input rows are those of the QDQ model with the
earlier layers' learned integers (onnxruntime run of the exported model as the oracle), the
integers stay on {⌊w/s⌋, ⌊w/s⌋ + 1}, the same seed gives the same bytes, the recovered
model verifies at 0 LSB in onnxruntime and LiteRT, QDrop's exact second-moment loss is the
expectation over random masks, and bad option values are refused naming the option."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper as nh
from small_nets import conv_chain, images

import edgequant as eq
from edgequant.errors import RecipeError
from edgequant.graph.passes.fold import prepare_float
from edgequant.ptq.recovery import adaround_sequential
from edgequant.ptq.recovery.layer_rows import gather_rows
from edgequant.recipes import get_recipe
from edgequant.runtime.sessions import ort_session

torch = pytest.importorskip("torch")

SEQ = {"adaround": True, "adaround_iters": 300, "adaround_seconds_per_layer": 0,
       "adaround_rows": 512, "adaround_mode": "sequential"}


def _quantize(model, x, **more):
    return eq.quantize(model, get_recipe("w4a8").with_options(**{**SEQ, **more}), {"x": x})


@pytest.fixture(scope="module")
def chain():
    return conv_chain("Relu", seed=5), images(32, 30) + 0.5, images(16, 31) + 0.5


@pytest.fixture(scope="module")
def seq(chain, monkeypatch_module):
    """The sequential w4a8 model and, per layer, the rows it was fitted on (a spy)."""
    m, cal, _ = chain
    seen = []
    real = adaround_sequential.deployed_rows

    def spy(model, layer, tensor, batches, picks):
        rows = real(model, layer, tensor, batches, picks)
        seen.append((layer, list(batches), list(picks), rows))
        return rows

    monkeypatch_module.setattr(adaround_sequential, "deployed_rows", spy)
    return _quantize(m, cal), seen


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _input_rows(model: onnx.ModelProto, layer, batches, picks) -> np.ndarray:
    """Oracle: ``layer``'s input rows in ``model``, run whole in onnxruntime."""
    node = next(n for n in model.graph.node if n.name == layer.node)
    sess = ort_session(model, extra_outputs=[node.input[0]])
    return np.concatenate([gather_rows(layer, sess.run([node.input[0]], f)[0], p)
                           for f, p in zip(batches, picks, strict=True)])


def test_rows_come_from_the_model_with_earlier_layers_learned(chain, seq):
    m, cal, _ = chain
    qm, seen = seq
    assert [la.node for la, *_ in seen] == ["c1", "dw", "c3", "fc"]
    assert qm.report["adaround"]["mode"] == "sequential"
    rtn = eq.quantize(m, get_recipe("w4a8").with_options(bias_correction="none"), {"x": cal})
    for layer, batches, picks, rows in seen:
        # the exported model holds the same integers (and biases) for every earlier layer,
        # and later layers cannot change this layer's input
        want = _input_rows(qm.model, layer, batches, picks)
        np.testing.assert_array_equal(rows, want, err_msg=layer.node)
        if layer.node != "c1":  # downstream of learned layers: not the RTN model's rows
            assert not np.array_equal(rows, _input_rows(rtn.model, layer, batches, picks))


def test_integers_are_floor_or_floor_plus_one(chain, seq):
    m, *_ = chain
    qm, _ = seq
    fm = prepare_float(m)
    floats = {t.name: nh.to_array(t) for t in fm.graph.initializer}
    weight_of = {n.name: n.input[1] for n in fm.graph.node if len(n.input) > 1}
    inits = {t.name: nh.to_array(t) for t in qm.model.graph.initializer}
    dq = {n.output[0]: n for n in qm.model.graph.node if n.op_type == "DequantizeLinear"}
    flipped = 0
    for node in qm.model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        d = dq[node.input[1]]
        q, s = inits[d.input[0]].astype(np.int32), inits[d.input[1]]
        w = floats[weight_of[node.name]]
        s = s.reshape(-1, *[1] * (w.ndim - 1))  # per output channel
        floor = np.floor(w / s)
        ok = (q == floor) | (q == floor + 1) | (np.abs(q) == 7)  # int4 narrow range clips
        assert ok.all(), node.name
        flipped += int(np.count_nonzero(q != np.clip(np.rint(w / s), -7, 7)))
    assert flipped > 0  # some weights rounded against round-to-nearest


def test_same_seed_gives_byte_identical_model(chain, seq):
    m, cal, _ = chain
    again = _quantize(m, cal)
    assert again.model.SerializeToString() == seq[0].model.SerializeToString()


def test_sequential_with_qdrop_verifies_at_zero_lsb(chain, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgequant.runtime.verify_tflite import verify_tflite

    m, cal, x = chain
    qm = _quantize(m, cal, adaround_qdrop=0.5)
    assert qm.report["adaround"]["qdrop"] == 0.5
    assert qm.report["adaround"]["bias_correction"]["method"] == "sequential"
    assert eq.verify(str(qm.save(tmp_path / "seq.onnx")), {"x": x}).max_lsb == 0
    lite = verify_tflite(qm.save(tmp_path / "seq.tflite"), {"x": x})
    assert lite.max_lsb == 0, lite.to_dict()


def test_sequential_lowers_output_error_vs_independent(chain):
    m, cal, x = chain
    ref = ort_session(m).run(None, {"x": x})[0]

    def err(qm):
        return float(np.mean((ort_session(qm.model).run(None, {"x": x})[0] - ref) ** 2))

    indep = _quantize(m, cal, adaround_mode="independent")
    assert err(_quantize(m, cal)) < err(indep)


@pytest.mark.parametrize("p", [0.0, 0.5, 0.25])
def test_qdrop_second_moments_are_the_mask_expectation(p):
    from edgequant.ptq.recovery.adaround_layer import second_moments

    rng = np.random.default_rng(3)
    xf = rng.normal(0.5, 1, (64, 3, 5))  # (r, G, K)
    xq = np.round(xf * 4) / 4
    got_xx, got_fx = (t.numpy() for t in second_moments(torch.from_numpy(xq), torch.from_numpy(xf), p))
    # oracle: Monte-Carlo mean over random element masks (numpy, float64)
    want_xx, want_fx, draws = 0.0, 0.0, 4000
    for _ in range(draws // 500):
        xm = np.where(rng.random((500, *xf.shape)) < p, xf, xq)  # (b, r, G, K)
        want_xx = want_xx + np.einsum("brgk,brgl->gkl", xm, xm) / xf.shape[0] / draws
        want_fx = want_fx + np.einsum("rgk,brgl->gkl", xf, xm) / xf.shape[0] / draws
    np.testing.assert_allclose(got_xx, want_xx, atol=0.01)
    np.testing.assert_allclose(got_fx, want_fx, atol=0.01)
    if p == 0:
        np.testing.assert_allclose(got_xx, np.einsum("rgk,rgl->gkl", xq, xq) / 64, rtol=1e-12)


@pytest.mark.parametrize("name, value", [("adaround_mode", "blockwise"), ("adaround_mode", 1),
                                         ("adaround_qdrop", 1.5), ("adaround_qdrop", "half"),
                                         ("adaround_act_loss", "yes"), ("adaround_act_loss", 1),
                                         ("adaround_act_loss", "auto")])
def test_bad_option_values_are_refused(name, value):
    with pytest.raises(RecipeError, match=name):
        get_recipe("w4a8").with_options(**{name: value})


def test_cli_bad_adaround_mode_names_the_option(tmp_path):
    import subprocess
    import sys

    onnx.save(conv_chain("Relu"), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=images(4, seed=1))
    res = subprocess.run([sys.executable, "-m", "edgequant.cli", "quantize", str(tmp_path / "m.onnx"),
                          "-o", str(tmp_path / "q.onnx"), "--calibration", str(tmp_path / "cal.npz"),
                          "--adaround", "--adaround-mode", "blockwise"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "adaround_mode" in res.stderr and "'blockwise' is not allowed" in res.stderr
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("act, want", [("Relu", (0.0, np.inf)), ("Clip", (0.0, 6.0)), ("", None)])
def test_following_activation_is_found(act, want):
    from edgequant.graph.info import GraphInfo
    from edgequant.ptq.recovery.layer_rows import following_clip

    m = conv_chain(act)
    info = GraphInfo.build(m)
    nodes = {n.name: n for n in m.graph.node}
    assert following_clip(info, nodes["c1"]) == want
    assert following_clip(info, nodes["dw"]) == want
    assert following_clip(info, nodes["c3"]) is None  # read by Reshape


def test_activation_aware_loss_lowers_the_clipped_output_error():
    from edgequant.ptq.recovery.adaround_layer import adaround_layer
    from edgequant.ptq.recovery.layer_rows import Layer
    from edgequant.qparams import qparams_for
    from edgequant.recipes.builtin import weight_spec

    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.3, (6, 40)).astype(np.float32)  # Gemm (N, K), transB=1
    b = rng.normal(0, 0.5, 6).astype(np.float32)
    layer = Layer("g", "Gemm", "x", "w", "nk", 1, w.shape)
    z = rng.normal(0, 1, (2048, 1, 40))
    xf = (0.5 + z + 2 * z.mean(-1, keepdims=True)).astype(np.float32)  # correlated, as pixels
    xq = (np.round(xf * 8) / 8).astype(np.float32)
    qp = qparams_for(w, weight_spec(4))
    s = qp.scale[:, None]

    def err(q):  # numpy float64 oracle: error after bias and ReLU6, as the loss sees it
        y = np.clip(xq[:, 0] @ (q * s).T + b, 0, 6)
        return float(((y - np.clip(xf[:, 0] @ w.T.astype(np.float64) + b, 0, 6)) ** 2).sum(1).mean())

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = adaround_layer(layer, w, qp, xq, xf, iters=300, seconds=0, seed=0, bias=b,
                             clip=(0.0, 6.0))
    finally:
        torch.set_num_threads(threads)
    floor = np.floor(w / s)
    assert np.all((res.ints == floor) | (res.ints == floor + 1) | (np.abs(res.ints) == 7))
    rtn = np.clip(np.rint(w / s), -7, 7)
    np.testing.assert_allclose(res.mse_rtn, err(rtn), rtol=1e-3)
    assert err(res.ints.astype(np.float64)) < 0.9 * err(rtn), (err(res.ints), err(rtn))
