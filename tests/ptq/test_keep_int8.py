"""``w4_keep_int8``: the first / last weighted layer (and depthwise convs) keep int8 weights in
the QDQ model, the rest stay int4; the mix lowers the output error (onnxruntime) and verifies
at 0 LSB in onnxruntime and LiteRT."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from small_nets import conv_chain, images

import edgequant as eq
from edgequant.ptq.recovery.keep_int8 import int8_layers
from edgequant.recipes import get_recipe
from edgequant.recipes.plan import resolve
from edgequant.runtime.sessions import ort_session

INT4, INT8 = onnx.TensorProto.INT4, onnx.TensorProto.INT8


def _weight_types(model: onnx.ModelProto) -> dict[str, int]:
    """Weight name → ONNX data type of its stored integers."""
    return {t.name.removesuffix("_quantized"): t.data_type for t in model.graph.initializer
            if t.name.endswith(".w_quantized")}


@pytest.mark.parametrize("which, int8", [
    ("none", set()),
    ("first_last", {"c1.w", "fc.w"}),
    ("first_last_depthwise", {"c1.w", "dw.w", "fc.w"}),
])
def test_kept_layers_store_int8_and_the_rest_int4(which, int8):
    m = conv_chain("Relu", seed=2)
    rec = get_recipe("w4a8").with_options(w4_keep_int8=which)
    qm = eq.quantize(m, rec, calibration={"x": images(16, 1)})
    types = _weight_types(qm.model)
    assert set(types) == {"c1.w", "dw.w", "c3.w", "fc.w"}
    assert {w for w, t in types.items() if t == INT8} == int8
    assert {w for w, t in types.items() if t == INT4} == set(types) - int8
    kept = [r for r in qm.plan.recipe.rules if r.name == "w4_keep_int8"]
    assert len(kept) == (1 if int8 else 0)


def test_w8a8_and_float_layers_are_left_alone():
    m = conv_chain("Relu", seed=2)
    assert int8_layers(m, resolve(get_recipe("w8a8"), m), "first_last") == []
    from edgequant.recipes.recipe import Rule

    rec = get_recipe("w4a8").with_rules(Rule(nodes=("c1",), action="float"))
    # the float first conv is not a 4-bit layer: the first 4-bit one (the depthwise) is kept
    assert int8_layers(m, resolve(rec, m), "first_last") == ["dw", "fc"]
    with pytest.raises(ValueError, match="w4_keep_int8"):
        int8_layers(m, resolve(rec, m), "all")


def test_keeping_layers_at_int8_lowers_output_error_and_verifies(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgequant.runtime.verify_tflite import verify_tflite

    m = conv_chain("Relu", seed=2)
    cal, held = images(64, 10) + 0.5, images(128, 11) + 0.5
    f = ort_session(m).run(None, {"x": held})[0]
    err, models = {}, {}
    for which in ("none", "first_last_depthwise"):
        qm = eq.quantize(m, get_recipe("w4a8").with_options(w4_keep_int8=which),
                         calibration={"x": cal})
        q = ort_session(qm.model).run(None, {"x": held})[0]
        err[which], models[which] = float(np.mean((q - f) ** 2)), qm
    assert err["first_last_depthwise"] < err["none"], err
    qm = models["first_last_depthwise"]
    path = qm.save(tmp_path / "mixed.onnx")
    assert eq.verify(str(path), {"x": held[:16]}).max_lsb == 0
    lite = verify_tflite(qm.save(tmp_path / "mixed.tflite"), {"x": held[:16]})
    assert lite.max_lsb == 0, lite.to_dict()
