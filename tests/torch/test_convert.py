"""convert: the QDQ model computes what the fake-quant model computed, with the trained qparams.

Oracles: onnxruntime runs the converted model; PyTorch runs the QAT model in eval mode.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper
from torch import nn
from torch_models import KEEP_FLOAT_WEIGHTS, run_ort, tiny_cnn

import edgequant
from edgequant.errors import EdgequantError, RecipeError
from edgequant.primitives import quantize
from edgequant.recipes import Rule, get_recipe
from edgequant.torch import FloatRegion, calibrate, convert, freeze_bn, prepare_qat

#: The int32 bias, the weight grid and the activation grid are simulated exactly; only float32
#: accumulation order differs (torch vs onnxruntime), which can flip a value sitting within
#: ~1e-6 of a rounding tie by one step. One output LSB is the most that may differ.
MAX_LSB = 1
#: Below this output scale, float32 rounding noise of values near 0 exceeds one LSB.
MIN_MEANINGFUL_SCALE = 1e-6
#: ... and such flips are rare: at most this fraction of output elements.
MAX_FLIP_FRACTION = 0.01


def _lsb(got: np.ndarray, want: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Difference in output grid steps (both are dequantized values on the same grid)."""
    return np.rint(np.abs(got.astype(np.float64) - want) / np.float64(scale))


def _train(qat, x, steps=4, lr=0.05):
    opt = torch.optim.SGD(qat.parameters(), lr=lr)
    for _ in range(steps):
        qat.train()
        loss = qat(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    qat.eval()


@pytest.mark.parametrize("recipe,learn", [("w4a8", False), ("w8a8", True), ("w8a16", False)])
def test_ort_output_matches_fake_quant(images, recipe, learn):
    qat = prepare_qat(tiny_cnn(), recipe, learn_scales=learn)
    _train(qat, images)
    freeze_bn(qat)
    _train(qat, images, steps=1)
    with torch.no_grad():
        want = qat(images).numpy()  # (32, 5) float32 on the output grid
    qm = convert(qat, images[:2])
    got = run_ort(qm.model, images.numpy())
    out_scale = qm.qparams[qm.model.graph.output[0].name].scale
    lsb = _lsb(got, want, out_scale)
    assert lsb.max() <= MAX_LSB
    assert np.mean(lsb > 0) <= MAX_FLIP_FRACTION


def test_qdq_nodes_carry_exactly_the_trained_qparams(images):
    qat = prepare_qat(tiny_cnn(), "w4a8")
    _train(qat, images)
    with torch.no_grad():
        qat(images)  # weight qparams follow the weights as of the last forward
    qm = convert(qat, images[:2])
    inits = {t.name: numpy_helper.to_array(t) for t in qm.model.graph.initializer}
    conv = qat.model[0]
    w_fold, _ = conv.folded()
    wqp = conv.weight_qparams()
    # Weights: int4 per-channel integers equal quantize(folded weight) with the trained scale.
    np.testing.assert_array_equal(inits["0.weight_scale"], wqp.scale)
    np.testing.assert_array_equal(inits["0.weight_quantized"],
                                  quantize(w_fold.detach().numpy(), wqp))
    assert {t.data_type for t in qm.model.graph.initializer if t.name == "0.weight_quantized"} \
        == {onnx.TensorProto.INT4}
    # Activations: the QuantizeLinear after the fused ReLU uses the module's output qparams.
    out_qp = conv.output_qparams()
    q_nodes = [n for n in qm.model.graph.node if n.op_type == "QuantizeLinear"]
    scales = {n.input[0]: inits[n.input[1]] for n in q_nodes}
    assert scales["relu"] == out_qp.scale
    assert scales[qm.model.graph.input[0].name] == qat.input_quant[0].qparams().scale
    assert qm.model.opset_import[0].version == 21


def test_convert_equals_edgequant_quantize_with_trained_qparams(images):
    """Handing the trained qparams to edgequant.quantize gives the same model outputs."""
    qat = prepare_qat(tiny_cnn(), "w4a8")
    _train(qat, images)
    qm = convert(qat, images[:2])
    float_onnx = _float_export(qat, images)
    lead = edgequant.quantize(float_onnx, "w4a8", calibration=None, qparams=dict(qm.qparams))
    np.testing.assert_array_equal(run_ort(lead.model, images.numpy()),
                                  run_ort(qm.model, images.numpy()))


def _float_export(qat, images):
    import copy

    from edgequant.torch.convert import _set_submodule
    from edgequant.torch.export import export_onnx
    from edgequant.torch.prepare import BOUNDARY_ATTR, qat_modules

    m = copy.deepcopy(qat)
    for mod in m.model.modules():  # float regions: their boundary hooks pass outputs through
        if hasattr(mod, BOUNDARY_ATTR):
            delattr(mod, BOUNDARY_ATTR)
    for name, mod in qat_modules(m.model).items():
        _set_submodule(m.model, name, mod.to_float())
    return export_onnx(m.model, images[:2])


def test_float_region_stays_float_and_output_still_matches(images):
    model = tiny_cnn()
    model[4] = FloatRegion(model[4])
    qat = prepare_qat(model, "w8a8")
    _train(qat, images)
    qm = convert(qat, images[:2])
    conv_weights = [n.input[1] for n in qm.model.graph.node if n.op_type == "Conv"]
    assert "4.module.weight" in conv_weights  # float initializer, no DequantizeLinear
    with torch.no_grad():
        want = qat(images).numpy()
    got = run_ort(qm.model, images.numpy(), KEEP_FLOAT_WEIGHTS)
    out_scale = qm.qparams[qm.model.graph.output[0].name].scale
    lsb = _lsb(got, want, out_scale)
    assert lsb.max() <= MAX_LSB and np.mean(lsb > 0) <= MAX_FLIP_FRACTION


def _q_params_of(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """QuantizeLinear input tensor → (scale, zero point) of the converted model."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.input[0]: (inits[n.input[1]], inits[n.input[2]])
            for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _assert_bit_identical(got: tuple[np.ndarray, np.ndarray], qp) -> None:
    assert got[0].dtype == np.float32 and got[0].tobytes() == np.float32(qp.scale).tobytes()
    np.testing.assert_array_equal(got[1], qp.zero_point)


def test_float_regions_in_the_middle_and_at_the_graph_end(images):
    """conv4+relu5 (middle) and the final Linear (graph end) stay float; each region's trained
    boundary quantizer ships as the Q/DQ pair on its output, the graph output's included."""
    model = tiny_cnn()
    model[4] = FloatRegion(nn.Sequential(model[4], model[5]))
    model[5] = nn.Identity()
    qat = prepare_qat(model, "w8a8", skip=["7"])
    _train(qat, images)
    with torch.no_grad():
        want = qat(images).numpy()  # (32, 5) float32
    qm = convert(qat, images[:2])
    g = qm.model.graph
    inits = {t.name: t for t in g.initializer}
    by_weight = {n.input[1]: n for n in g.node if n.op_type in ("Conv", "Gemm")}
    for w in ("4.module.0.weight", "7.weight"):  # float weights read directly, no DQ
        assert inits[w].data_type == onnx.TensorProto.FLOAT
    assert "0.weight_dequantized" in by_weight  # the QAT conv is quantized
    q = _q_params_of(qm.model)
    middle = next(n for n in g.node if n.op_type == "Relu"
                  and n.input[0] == by_weight["4.module.0.weight"].output[0]).output[0]
    _assert_bit_identical(q[middle], qat.model[4].edgequant_out_quant.qparams())
    out = g.output[0].name
    _assert_bit_identical(q[f"{out}_float"], qat.model[7].edgequant_out_quant.qparams())
    assert by_weight["4.module.0.weight"].output[0] not in q  # inside a region: float
    tensors = qm.plan.tensors
    assert tensors[out].action == "quantize" and tensors[middle].action == "quantize"
    floats = {d.node for d in qm.plan.nodes if d.action == "float"}
    assert {by_weight["4.module.0.weight"].name, by_weight["7.weight"].name} <= floats
    got = run_ort(qm.model, images.numpy(), KEEP_FLOAT_WEIGHTS)
    scale = qat.model[7].edgequant_out_quant.qparams().scale
    lsb = _lsb(got, want, scale)
    assert lsb.max() <= MAX_LSB and np.mean(lsb > 0) <= MAX_FLIP_FRACTION


def test_middle_float_region_equals_edgequant_quantize_with_a_float_rule(images):
    """With the region's nodes kept float by a rule, PTQ's quantize + the trained qparams
    writes the same model convert does (one Q/DQ writer, one plan resolver)."""
    model = tiny_cnn()
    model[4] = FloatRegion(model[4])
    qat = prepare_qat(model, "w8a8")
    _train(qat, images)
    qm = convert(qat, images[:2])
    region_nodes = [n.name for n in qm.model.graph.node
                    if n.op_type == "Conv" and n.input[1] == "4.module.weight"]
    recipe = replace(get_recipe("w8a8"), rules=(Rule(nodes=tuple(region_nodes),
                                                     action="float"),))
    lead = edgequant.quantize(_float_export(qat, images), recipe, calibration=None,
                              qparams=dict(qm.qparams), check_speed=False)
    np.testing.assert_array_equal(run_ort(lead.model, images.numpy(), KEEP_FLOAT_WEIGHTS),
                                  run_ort(qm.model, images.numpy(), KEEP_FLOAT_WEIGHTS))


def test_ptq_through_calibrate_has_dynamic_batch(images):
    qat = prepare_qat(tiny_cnn(), "w8a8")
    calibrate(qat, [images])
    qm = convert(qat, images[:1])
    sess = ort.InferenceSession(qm.model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    assert sess.run(None, {name: images[:7].numpy()})[0].shape == (7, 5)


def test_convert_rejects_a_plain_module(images):
    with pytest.raises(TypeError, match="QATModel"):
        convert(tiny_cnn(), images[:2])


def test_branch_input_scale_mismatch_is_reported(images):
    class TwoBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(64, 4)
            self.b = nn.Linear(64, 4)

        def forward(self, x):
            x = x.flatten(1)
            return self.a(x) + self.b(x)  # b's input is x, but the last quantizer ran in a

    qat = prepare_qat(TwoBranch(), "w8a8")
    qat.train()
    qat(images)
    with pytest.raises(EdgequantError, match="'b'"):
        convert(qat, images[:2])


class AttrNet(nn.Module):
    """Not a Sequential: conv → bn → relu → pool → fc called from forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.fc = nn.Linear(4 * 16, 5)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.relu1(self.bn1(self.conv1(x))), 2)
        return self.fc(x.flatten(1))


def test_explicit_fuse_groups_for_attribute_models(images):
    torch.manual_seed(0)
    qat = prepare_qat(AttrNet(), "w4a8", fuse=[["conv1", "bn1", "relu1"]])
    assert qat.model.conv1.relu and qat.model.conv1.bn is not None
    _train(qat, images)
    with torch.no_grad():
        want = qat(images).numpy()
    qm = convert(qat, images[:2])
    got = run_ort(qm.model, images.numpy())
    out_scale = qm.qparams[qm.model.graph.output[0].name].scale
    assert _lsb(got, want, out_scale).max() <= MAX_LSB


class ReluNotFused(nn.Module):
    """conv → ReLU module called from forward (prepare_qat cannot fuse it) → pool → fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.fc = nn.Linear(4 * 16, 5)

    def forward(self, x):
        return self.fc(nn.functional.max_pool2d(self.relu1(self.conv1(x)), 2).flatten(1))


def test_relu_after_a_quantized_output_is_fused_by_the_plan(images):
    """Training quantized the conv output, then ran a float ReLU on it: relu(q(x)) == q(relu(x))
    on the same grid, so the plan fuses the ReLU and its output carries the conv's qparams."""
    torch.manual_seed(0)
    qat = prepare_qat(ReluNotFused(), "w8a8")
    assert not qat.model.conv1.relu
    _train(qat, images)
    with torch.no_grad():
        want = qat(images).numpy()  # (32, 5) float32
    qm = convert(qat, images[:2])
    conv = next(n for n in qm.model.graph.node if n.op_type == "Conv")
    relu = next(n for n in qm.model.graph.node if n.op_type == "Relu")
    assert qm.plan.tensors[conv.output[0]].action == "fused"
    _assert_bit_identical(_q_params_of(qm.model)[relu.output[0]],
                          qat.model.conv1.output_qparams())
    got = run_ort(qm.model, images.numpy())
    lsb = _lsb(got, want, qm.qparams[qm.model.graph.output[0].name].scale)
    assert lsb.max() <= MAX_LSB and np.mean(lsb > 0) <= MAX_FLIP_FRACTION


def test_unfused_batchnorm_is_reported_at_convert(images):
    qat = prepare_qat(AttrNet(), "w8a8")  # conv1 → (float) bn1 → fc: fc's input is not quantized
    _train(qat, images)
    with pytest.raises(EdgequantError, match=r"fuse.*'fc'"):
        convert(qat, images[:2])


def test_bad_fuse_groups():
    with pytest.raises(RecipeError, match=r"'bn9'.*close names.*'bn1'"):
        prepare_qat(AttrNet(), "w8a8", fuse=[["conv1", "bn9"]])
    with pytest.raises(RecipeError, match=r"\['fc', 'bn1'\].*Linear"):
        prepare_qat(AttrNet(), "w8a8", fuse=[["fc", "bn1"]])


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    c1=st.integers(1, 6),
    c2=st.integers(1, 6),
    kernel=st.sampled_from([1, 3]),
    stride=st.sampled_from([1, 2]),
    bn=st.booleans(),
    relu=st.booleans(),
    recipe=st.sampled_from(["w4a8", "w8a8", "w8a16"]),
    learn=st.booleans(),
)
def test_random_convnets_deploy_what_training_saw(seed, c1, c2, kernel, stride, bn, relu,
                                                  recipe, learn):
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(2, c1, kernel, stride=stride, padding=kernel // 2)]
    layers += [nn.BatchNorm2d(c1)] if bn else []
    layers += [nn.ReLU()] if relu else []
    layers += [nn.Conv2d(c1, c2, 3, padding=1, bias=not bn), nn.Flatten()]
    model = nn.Sequential(*layers)
    x = torch.randn(8, 2, 6, 6)
    qat = prepare_qat(model, recipe, learn_scales=learn)
    _train(qat, x, steps=2, lr=0.01)
    with torch.no_grad():
        want = qat(x).numpy()
    qm = convert(qat, x[:2])
    got = run_ort(qm.model, x.numpy())
    out_scale = qm.qparams[qm.model.graph.output[0].name].scale
    # A scale collapsed to ~MIN_SCALE (LSQ driving an all-zero output's scale to 0) turns
    # float32 accumulation noise into thousands of "LSBs": not a deployment mismatch.
    assume(out_scale > MIN_MEANINGFUL_SCALE)
    assert _lsb(got, want, out_scale).max() <= MAX_LSB


def test_plan_and_report_describe_the_converted_graph(images):
    qat = prepare_qat(tiny_cnn(), "w4a8", skip=["4"])
    calibrate(qat, [images])
    qm = convert(qat, images[:2])
    actions = {d.op_type + ":" + d.action for d in qm.plan.nodes if d.op_type in ("Conv", "Gemm")}
    assert actions == {"Conv:quantize", "Conv:float", "Gemm:quantize"}
    assert qm.report["qat_modules"] == ["0", "7"] and qm.report["float_regions"] == ["4"]
    assert qm.report["recipe"] == "w4a8"
