"""Cross-layer equalization: float equivalence in onnxruntime, equalized ranges, options."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from small_nets import conv_chain, images, mlp

from edgequant.errors import RecipeError
from edgequant.ptq.recovery.cle import equalize, find_pairs, in_rows, out_rows
from edgequant.recipes import get_recipe
from edgequant.runtime.sessions import ort_session

#: float32 rescaling by s and 1/s: relative output change of a few ulp per layer
FLOAT_RTOL = 1e-4


def _copy(m: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(m)
    return out


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort_session(m).run(None, {m.graph.input[0].name: x})[0]


def _weights(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}


def _ranges(m: onnx.ModelProto, first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
    nodes = {n.name: n for n in m.graph.node}
    w = _weights(m)
    n1, n2 = nodes[first], nodes[second]
    return (np.abs(out_rows(n1, w[n1.input[1]])).max(axis=1),
            np.abs(in_rows(n2, w[n2.input[1]])).max(axis=1))


@pytest.mark.parametrize("act", ["Relu", ""])
def test_conv_chain_float_outputs_unchanged(act):
    m = conv_chain(act)
    eq_m, summary = equalize(_copy(m))
    assert [p[:3] for p in summary["pairs"]] == [["c1", "c1_act" if act else None, "dw"],
                                                 ["dw", "dw_act" if act else None, "c3"]]
    x = images(16, seed=3)
    ref, got = _run(m, x), _run(eq_m, x)
    np.testing.assert_allclose(got, ref, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * np.abs(ref).max())
    assert not np.allclose(_weights(m)["c1.w"], _weights(eq_m)["c1.w"])  # it did rescale


def test_conv_chain_ranges_equalized():
    m = conv_chain("Relu")
    before = _ranges(m, "c1", "dw")
    eq_m, _ = equalize(_copy(m))
    for first, second in (("c1", "dw"), ("dw", "c3")):
        r1, r2 = _ranges(eq_m, first, second)
        np.testing.assert_allclose(r1, r2, rtol=1e-3)  # a fixed point of the sweeps
    spread = lambda r: r.max() / r.min()  # noqa: E731
    assert spread(_ranges(eq_m, "c1", "dw")[0]) < spread(before[0]) / 3


def test_gemm_matmul_pair_exact_products():
    """One pair: r1'_c = r2'_c and r1'_c · r2'_c = r1_c · r2_c (exact rational arithmetic on
    the stored float32 values, to float32 rounding)."""
    m = mlp()
    r1, r2 = _ranges(m, "fc1", "fc2")
    eq_m, summary = equalize(_copy(m))
    assert summary["pairs"][0][:3] == ["fc1", "relu", "fc2"]
    q1, q2 = _ranges(eq_m, "fc1", "fc2")
    for c in range(len(r1)):
        before = Fraction(float(r1[c])) * Fraction(float(r2[c]))
        after = Fraction(float(q1[c])) * Fraction(float(q2[c]))
        assert abs(after - before) <= before * Fraction(1, 10**6)
        assert abs(Fraction(float(q1[c])) - Fraction(float(q2[c]))) <= Fraction(float(q1[c])) / 10**6
    x = np.random.default_rng(1).normal(0, 1, (32, 6)).astype(np.float32)
    ref = _run(m, x)
    np.testing.assert_allclose(_run(eq_m, x), ref, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * np.abs(ref).max())


def test_relu6_pairs_need_data_and_stay_exact_on_it():
    m = conv_chain("Clip", spread=10.0)
    assert len(find_pairs(m)) == 2
    _, no_data = equalize(_copy(m))
    assert no_data["pairs"] == []  # Clip(0, 6) cannot be rescaled blindly
    x = images(32, seed=5) * 3  # drives some channels past 6
    eq_m, summary = equalize(_copy(m), lambda: iter([{"x": x[:16]}, {"x": x[16:]}]))
    assert len(summary["pairs"]) == 2
    assert any(p[4] > 0 for p in summary["pairs"])  # saturating channels held at s = 1
    ref = _run(m, x)
    np.testing.assert_allclose(_run(eq_m, x), ref, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * np.abs(ref).max())
    assert [n.op_type for n in eq_m.graph.node].count("Clip") == 2  # the bound is kept


def test_shared_weight_and_branching_tensors_are_not_paired():
    m = conv_chain("Relu")
    # a second consumer of c1's activation breaks the pair (c1, dw)
    m.graph.node.append(onnx.helper.make_node("Identity", ["c1.a"], ["side"], name="side"))
    m.graph.output.append(onnx.helper.make_tensor_value_info("side", onnx.TensorProto.FLOAT, None))
    assert [(p.first, p.second) for p in find_pairs(m)] == [("dw", "c3")]


@pytest.mark.parametrize("opts", [{"cle": "yes"}, {"cle": 1}, {"bias_correction": "analytic"},
                                  {"bias_correction": True}])
def test_bad_option_values_are_refused(opts):
    with pytest.raises(RecipeError, match=next(iter(opts))):
        get_recipe("w8a8").with_options(**opts)


def test_channel_stats_match_numpy_over_batches():
    from edgequant.ptq.recovery.stats import channel_stats

    m = conv_chain("Relu")
    x = images(24, seed=7)
    stats = channel_stats(m, {"c1.y": 1, "flat": -1},
                          lambda: iter([{"x": x[:10]}, {"x": x[10:]}]))
    full = ort_session(m, extra_outputs=["c1.y"]).run(["c1.y"], {"x": x})[0]  # (24, 16, 8, 8)
    rows = np.moveaxis(full, 1, 0).reshape(16, -1).astype(np.float64)
    s = stats["c1.y"]
    np.testing.assert_allclose(s.max, rows.max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(s.min, rows.min(axis=1), rtol=1e-6)
    np.testing.assert_allclose(s.mean, rows.mean(axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.std, rows.std(axis=1), rtol=1e-4)
    assert s.count == 24 * 64 and stats["flat"].count == 24
