"""Resize / Upsample vs onnxruntime: every mode × coordinate_transformation_mode ×
nearest_mode, upsampling and downsampling, ``scales`` and ``sizes``, opset 10 / 18 forms.

Nearest resizing only copies elements, so it must match exactly (same neighbour chosen);
linear and cubic results are weighted sums compared within float tolerances.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from single_op import run_ort, run_ref, single_op_model

from edgequant.errors import UnsupportedOpError

#: linear / cubic: up to 16 float32 products summed in a different order than MLAS.
INTERP_RTOL = 1e-5
INTERP_ATOL = 1e-5

COORD = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
         "asymmetric", "tf_half_pixel_for_nn"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
#: (input H, W, scales H, W): upsampling, downsampling and non-integer ratios
GEOMETRY = [(5, 7, 2.0, 1.5), (8, 9, 0.5, 0.75), (4, 6, 1.7, 0.6)]
EMPTY = np.zeros(0, np.float32)
#: uint8 bilinear: we evaluate onnxruntime's four-term float32 sum and truncate, but its kernel
#: still lands one step lower or higher on well under 1 % of values (weights rounded differently)
UINT8_LINEAR_LSB = 1

rng = np.random.default_rng(11)


def _x(h, w, dtype=np.float32):
    if dtype == np.uint8:
        return rng.integers(0, 256, (2, 3, h, w)).astype(np.uint8)
    return rng.uniform(-3, 3, (2, 3, h, w)).astype(np.float32)


def _compare(model, x, exact: bool):
    ours, theirs = run_ref(model, {"x": x})[0], run_ort(model, {"x": x})[0]
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (ours.shape, theirs.shape)
    if exact:
        np.testing.assert_array_equal(ours, theirs)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=INTERP_RTOL, atol=INTERP_ATOL)


def _scales_model(x, scales, **attrs):
    sc = np.array([1, 1, *scales], np.float32)
    return single_op_model("Resize", {"x": x}, {"roi": EMPTY, "sc": sc}, ["x", "roi", "sc"],
                           **attrs)


@pytest.mark.parametrize("coord,nearest,geo", list(itertools.product(COORD, NEAREST, GEOMETRY)))
def test_nearest_matches_onnxruntime_exactly(coord, nearest, geo):
    h, w, sh, sw = geo
    x = _x(h, w)
    _compare(_scales_model(x, (sh, sw), mode="nearest", coordinate_transformation_mode=coord,
                           nearest_mode=nearest), x, exact=True)


@pytest.mark.parametrize("coord,geo", list(itertools.product(COORD, GEOMETRY)))
def test_linear_matches_onnxruntime(coord, geo):
    h, w, sh, sw = geo
    x = _x(h, w)
    _compare(_scales_model(x, (sh, sw), mode="linear", coordinate_transformation_mode=coord), x,
             exact=False)


@pytest.mark.parametrize("coord,exclude,geo",
                         list(itertools.product(COORD, [0, 1], GEOMETRY[:1] + GEOMETRY[2:])))
def test_cubic_matches_onnxruntime(coord, exclude, geo):
    h, w, sh, sw = geo
    x = _x(h, w)
    _compare(_scales_model(x, (sh, sw), mode="cubic", coordinate_transformation_mode=coord,
                           exclude_outside=exclude, cubic_coeff_a=-0.5), x, exact=False)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_sizes_input_matches_onnxruntime(mode):
    x = _x(6, 5)
    sizes = np.array([2, 3, 9, 3], np.int64)
    model = single_op_model("Resize", {"x": x}, {"sz": sizes}, ["x", "", "", "sz"], mode=mode)
    _compare(model, x, exact=mode == "nearest")


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_tf_crop_and_resize_extrapolates(mode):
    x = _x(6, 7)
    roi = np.array([0, 0, -0.2, 0.1, 1, 1, 0.8, 1.3], np.float32)
    sizes = np.array([2, 3, 5, 6], np.int64)
    model = single_op_model("Resize", {"x": x}, {"roi": roi, "sz": sizes},
                            ["x", "roi", "", "sz"], mode=mode,
                            coordinate_transformation_mode="tf_crop_and_resize",
                            extrapolation_value=-7.0)
    _compare(model, x, exact=mode == "nearest")


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
def test_opset18_axes_and_aspect_ratio_policy(policy):
    x = _x(6, 8)
    model = single_op_model("Resize", {"x": x}, {"sz": np.array([9, 10], np.int64)},
                            ["x", "", "", "sz"], mode="linear", axes=[2, 3],
                            keep_aspect_ratio_policy=policy)
    _compare(model, x, exact=False)


@pytest.mark.parametrize("coord", COORD)
def test_uint8_linear_within_one_step(coord):
    x = _x(5, 7, np.uint8)
    model = _scales_model(x, (2.0, 1.5), mode="linear", coordinate_transformation_mode=coord)
    ours, theirs = run_ref(model, {"x": x})[0], run_ort(model, {"x": x})[0]
    assert ours.dtype == theirs.dtype == np.uint8
    diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
    assert diff.max() <= UINT8_LINEAR_LSB and (diff == 0).mean() > 0.98, (diff.max(), diff.mean())


def test_uint8_nearest_is_exact():
    x = _x(4, 5, np.uint8)
    _compare(_scales_model(x, (2.0, 3.0), mode="nearest"), x, exact=True)


@pytest.mark.parametrize("mode,scales", [("nearest", (2.0, 3.0)), ("nearest", (0.5, 0.5)),
                                         ("linear", (2.0, 1.5))])
def test_resize10_and_upsample9(mode, scales):
    x = _x(6, 4)
    sc = np.array([1, 1, *scales], np.float32)
    resize10 = single_op_model("Resize", {"x": x}, {"sc": sc}, ["x", "sc"], mode=mode)
    resize10.opset_import[0].version = 10
    _compare(resize10, x, exact=mode == "nearest")
    if min(scales) >= 1:  # Upsample only enlarges
        upsample = single_op_model("Upsample", {"x": x}, {"sc": sc}, ["x", "sc"], mode=mode)
        upsample.opset_import[0].version = 9
        _compare(upsample, x, exact=mode == "nearest")


def test_antialias_is_rejected_naming_node_and_attribute():
    x = _x(4, 4)
    model = _scales_model(x, (0.5, 0.5), mode="linear", antialias=1)
    with pytest.raises(UnsupportedOpError, match=r"Resize node 'Resize_node'.*antialias"):
        run_ref(model, {"x": x})


@pytest.mark.parametrize("seed", [*range(10), 49, 197])  # 49, 197: output size == input
def test_random_geometry_matches_onnxruntime(seed):
    """Random sizes, ratios and modes; nearest must still pick onnxruntime's neighbours, and an
    output the size of the input is a copy whatever the scale (onnxruntime's shortcut)."""
    r = np.random.default_rng(100 + seed)
    h, w = (int(v) for v in r.integers(1, 9, 2))
    scales = tuple(float(np.float32(v)) for v in r.uniform(0.3, 3.5, 2))
    mode = str(r.choice(["nearest", "linear", "cubic"]))
    coord = str(r.choice(COORD))
    attrs = dict(mode=mode, coordinate_transformation_mode=coord)
    if mode == "nearest":
        attrs["nearest_mode"] = str(r.choice(NEAREST))
    x = _x(h, w)
    model = _scales_model(x, scales, **attrs)
    if min(int(s * d) for s, d in zip(scales, (h, w), strict=True)) < 1:
        pytest.skip("empty output")
    _compare(model, x, exact=mode == "nearest")
