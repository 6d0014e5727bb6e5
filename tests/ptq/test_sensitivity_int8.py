"""``w4_keep_int8="sensitivity"``: per-layer int4 sensitivity against a brute-force oracle
(numpy int4 weights, one onnxruntime run per layer), the byte budget counted from the
exported model, the chosen layers int8 in the QDQ model, 0 LSB in onnxruntime and LiteRT,
and clear errors for bad option values."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from small_nets import conv_chain, images

import edgequant as eq
from edgequant.errors import RecipeError
from edgequant.graph.passes.fold import prepare_float
from edgequant.ptq.recovery.sensitivity_int8 import choose_int8, measure_sensitivity
from edgequant.recipes import get_recipe
from edgequant.recipes.plan import resolve
from edgequant.runtime.sessions import ort_session

INT4, INT8 = onnx.TensorProto.INT4, onnx.TensorProto.INT8
#: Oracle and edgequant divide by the scale in float64 vs float32: a weight right at a
#: rounding midpoint may land one step apart, which moves a sensitivity by far less than this.
RTOL = 1e-3


def _int4(w: np.ndarray) -> np.ndarray:
    """Symmetric narrow-range int4 per output channel (axis 0), dequantized: the oracle."""
    w = w.astype(np.float64)
    scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 7.0  # (C_out,)
    scale = np.where(scale > 0, scale, 1.0).reshape(-1, *[1] * (w.ndim - 1))
    return np.clip(np.round(w / scale), -7, 7) * scale


def _channel_mean(y: np.ndarray) -> np.ndarray:
    """Per-channel mean of a (N, C, ...) output: (C,)."""
    return y.mean(axis=tuple(i for i in range(y.ndim) if i != 1))


def _oracle(model: onnx.ModelProto, x: dict[str, np.ndarray], bias_correct: bool) -> dict:
    """Node → Σ(y_l − y)² / Σy² with only node l's weight int4 (and, with ``bias_correct``,
    its bias shifted by the per-channel mean output change that weight causes)."""
    first = model.graph.output[0].name
    y = ort_session(model).run([first], x)[0].astype(np.float64)
    inits = {t.name: i for i, t in enumerate(model.graph.initializer)}
    out = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.input[1] not in inits:
            continue
        m = onnx.ModelProto()
        m.CopyFrom(model)
        wi = inits[node.input[1]]
        w = numpy_helper.to_array(m.graph.initializer[wi])
        m.graph.initializer[wi].CopyFrom(numpy_helper.from_array(
            _int4(w).astype(np.float32), node.input[1]))
        if bias_correct:
            # the layer's own output, float vs int4 weight: its input is float either way
            probe = onnx.ModelProto()
            probe.CopyFrom(m)
            probe.graph.output.extend([onnx.ValueInfoProto(name=node.output[0])])
            fl = onnx.ModelProto()
            fl.CopyFrom(model)
            fl.graph.output.extend([onnx.ValueInfoProto(name=node.output[0])])
            shift = (_channel_mean(ort_session(fl).run([node.output[0]], x)[0].astype(np.float64))
                     - _channel_mean(ort_session(probe).run([node.output[0]], x)[0]
                                     .astype(np.float64)))  # (C,)
            bi = inits[node.input[2]]
            b = numpy_helper.to_array(m.graph.initializer[bi]).astype(np.float64)
            m.graph.initializer[bi].CopyFrom(numpy_helper.from_array(
                (b + shift).astype(np.float32), node.input[2]))
        yl = ort_session(m).run([first], x)[0].astype(np.float64)
        out[node.name] = float(np.sum((yl - y) ** 2) / np.sum(y ** 2))
    return out


def _measured(model: onnx.ModelProto, x: dict[str, np.ndarray], **options) -> dict:
    rec = get_recipe("w4a8").with_options(weight_clip="none", **options)
    costs = measure_sensitivity(model, resolve(rec, model), rec, [x])
    return {c.node: c.sensitivity for c in costs}


def _ranking(s: dict) -> list[str]:
    return sorted(s, key=lambda n: -s[n])


@pytest.mark.parametrize("bias_correction", ["none", "empirical"])
def test_ranking_matches_brute_force_oracle_on_conv_chain(bias_correction):
    m = prepare_float(conv_chain("Relu", seed=2), [])
    x = {"x": images(32, 1)}
    got = _measured(m, x, bias_correction=bias_correction)
    want = _oracle(m, x, bias_correct=bias_correction == "empirical")
    assert set(got) == set(want) == {"c1", "dw", "c3", "fc"}
    assert _ranking(got) == _ranking(want)
    for n in want:
        assert got[n] == pytest.approx(want[n], rel=RTOL), n


def test_ranking_matches_oracle_on_real_weights(effnet_head, photos):
    m = prepare_float(onnx.load(effnet_head), [])
    x = {"input": photos[0][:16]}
    got = _measured(m, x, bias_correction="none")
    want = _oracle(m, x, bias_correct=False)
    assert len(want) >= 8 and set(got) == set(want)
    assert _ranking(got) == _ranking(want)
    for n in want:
        assert got[n] == pytest.approx(want[n], rel=RTOL), n


def _stored(model: onnx.ModelProto) -> tuple[int, dict[str, int]]:
    """Integer weight bytes counted from the initializers (int4 packed two per byte), and
    weight name → stored type."""
    total, types = 0, {}
    for t in model.graph.initializer:
        if t.data_type in (INT4, INT8) and len(t.dims) > 1:
            n = int(np.prod(t.dims))
            total += (n + 1) // 2 if t.data_type == INT4 else n
            types[t.name.removesuffix("_quantized")] = t.data_type
    return total, types


def test_budget_is_respected_and_chosen_layers_store_int8():
    m = conv_chain("Relu", seed=2)
    cal = {"x": images(32, 1)}

    def run(budget):
        rec = get_recipe("w4a8").with_options(w4_keep_int8="sensitivity", w4_int8_budget=budget)
        return eq.quantize(m, rec, calibration=cal)

    low, types = _stored(run(0.0).model)
    assert set(types.values()) == {INT4}
    high, types = _stored(run(1.0).model)
    assert set(types.values()) == {INT8}
    for budget in (0.05, 0.1, 0.5, 0.9):
        qm = run(budget)
        size, types = _stored(qm.model)
        assert size <= low + budget * (high - low), budget
        rep = qm.report["w4_keep_int8"]
        int8 = {c["weight"] for c in rep["ranked"] if c["int8"]}
        assert {w for w, t in types.items() if t == INT8} == int8
        assert rep["weight_bytes"]["chosen"] == size
        assert rep["layers"] and set(rep["layers"]) == {c["node"] for c in rep["ranked"]
                                                        if c["int8"]}
    # the greedy fill: nothing left out would still fit, and the most sensitive per byte win
    ranked = choose_int8(measure_sensitivity(prepare_float(m, []), resolve(
        get_recipe("w4a8"), prepare_float(m, [])), get_recipe("w4a8"), [cal]), 0.1)
    spent = sum(c.extra_bytes for c in ranked if c.int8)
    allowed = 0.1 * sum(c.extra_bytes for c in ranked)
    assert all(spent + c.extra_bytes > allowed for c in ranked if not c.int8)
    assert ranked[0].int8


def test_sensitivity_choice_lowers_output_error_on_real_weights(effnet_head, photos):
    cal, held = photos
    f = ort_session(str(effnet_head)).run(None, {"input": held})[0]
    err = {}
    for mode in ("none", "sensitivity"):
        rec = get_recipe("w4a8").with_options(w4_keep_int8=mode, w4_int8_budget=0.3)
        qm = eq.quantize(str(effnet_head), rec, calibration={"input": cal})
        err[mode] = float(np.mean((ort_session(qm.model).run(None, {"input": held})[0] - f) ** 2))
    assert err["sensitivity"] < 0.8 * err["none"], err


def test_sensitivity_mix_verifies_in_onnxruntime_and_litert(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgequant.runtime.verify_tflite import verify_tflite

    m = conv_chain("Relu", seed=2)
    cal, held = images(64, 10) + 0.5, images(16, 11) + 0.5
    rec = get_recipe("w4a8").with_options(w4_keep_int8="sensitivity", w4_int8_budget=0.1)
    qm = eq.quantize(m, rec, calibration={"x": cal})
    types = _stored(qm.model)[1]
    assert INT8 in types.values() and INT4 in types.values()  # a real mix
    path = qm.save(tmp_path / "mixed.onnx")
    assert eq.verify(str(path), {"x": held}).max_lsb == 0
    assert eq.verify(str(qm.save(tmp_path / "mixed_qop.onnx", format="qop")),
                     {"x": held}).max_lsb == 0
    lite = verify_tflite(qm.save(tmp_path / "mixed.tflite"), {"x": held})
    assert lite.max_lsb == 0, lite.to_dict()


@pytest.mark.parametrize("name, value, allowed", [
    ("w4_int8_budget", -0.1, "[0.0, 1.0]"),
    ("w4_int8_budget", 1.5, "[0.0, 1.0]"),
    ("w4_int8_budget", "half", "[0.0, 1.0]"),
    ("w4_keep_int8", "best", "sensitivity"),
    ("w4_sensitivity_samples", 0, "integer"),
])
def test_bad_option_values_name_the_option(name, value, allowed):
    with pytest.raises(RecipeError, match=name) as exc:
        get_recipe("w4a8").with_options(**{name: value})
    assert allowed in str(exc.value) and repr(value) in str(exc.value)


def test_choose_int8_rejects_a_budget_outside_0_1():
    with pytest.raises(ValueError, match="w4_int8_budget"):
        choose_int8([], 1.01)


def test_cli_flags(tmp_path):
    import json
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "edgequant.cli", *map(str, args)],
                              capture_output=True, text=True, timeout=300)

    onnx.save(conv_chain("Relu", seed=2), tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=images(16, seed=1))
    common = ("quantize", tmp_path / "m.onnx", "-o", tmp_path / "q.onnx", "--recipe", "w4a8",
              "--calibration", tmp_path / "cal.npz", "--w4-keep-int8", "sensitivity")
    res = cli(*common, "--w4-int8-budget", "0.1", "--report", tmp_path / "r.json",
              "--no-speed-check")
    assert res.returncode == 0, res.stderr
    rep = json.loads((tmp_path / "r.json").read_text())["w4_keep_int8"]
    assert rep["mode"] == "sensitivity" and rep["budget"] == 0.1 and rep["samples"] == 16
    types = _stored(onnx.load(tmp_path / "q.onnx"))[1]
    assert {w for w, t in types.items() if t == INT8} == {c["weight"] for c in rep["ranked"]
                                                          if c["int8"]} != set()
    bad = cli(*common, "--w4-int8-budget", "1.5")
    assert bad.returncode == 2 and "w4_int8_budget" in bad.stderr and "1.5" in bad.stderr


def test_w8a8_has_nothing_to_measure_and_missing_data_is_a_clear_error():
    from edgequant.errors import CalibrationError
    from edgequant.ptq.recovery.sensitivity_int8 import sensitive_layers

    m = prepare_float(conv_chain("Relu", seed=2), [])
    w8 = get_recipe("w8a8").with_options(w4_keep_int8="sensitivity")
    nodes, rep, _ = sensitive_layers(m, resolve(w8, m), w8, None)
    assert nodes == [] and rep["ranked"] == []
    w4 = get_recipe("w4a8").with_options(w4_keep_int8="sensitivity")
    with pytest.raises(CalibrationError, match=r"w4_keep_int8=.sensitivity.*calibration"):
        sensitive_layers(m, resolve(w4, m), w4, None)


def test_w4a8_mixed_recipe_is_w4a8_with_the_sensitivity_mix_through_api_and_cli(tmp_path):
    from typer.testing import CliRunner

    from edgequant.cli import app

    m = conv_chain("Relu", seed=2)
    cal = {"x": images(32, 1)}
    named = eq.quantize(m, "w4a8_mixed", calibration=cal)
    spelled = eq.quantize(m, get_recipe("w4a8").with_options(w4_keep_int8="sensitivity"),
                          calibration=cal)
    assert named.model.graph == spelled.model.graph  # same integers, same int8 layers
    rep = named.report["w4_keep_int8"]
    assert rep["mode"] == "sensitivity" and rep["budget"] == 0.25 and rep["layers"]
    size, types = _stored(named.model)
    assert INT4 in types.values() and INT8 in types.values()  # really mixed
    src, out, data = tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path / "cal.npz"
    onnx.save(m, src)
    np.savez(data, x=cal["x"])
    res = CliRunner().invoke(app, ["quantize", str(src), "--recipe", "w4a8_mixed",
                                   "--calibration", str(data), "-o", str(out)])
    assert res.exit_code == 0, res.output
    cli_size, cli_types = _stored(onnx.load(out))  # the CLI may rename a transposed weight
    assert cli_size == size and sorted(cli_types.values()) == sorted(types.values())
