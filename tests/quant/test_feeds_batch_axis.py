"""Samples on any axis: explicit batch axes, automatic detection, -1 dims, clear refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "graph"))
import real_world_models as rw

from edgequant.errors import CalibrationError
from edgequant.runtime.batching import batches as iter_batches
from edgequant.runtime.batching import fixed_batch_size
from edgequant.runtime.feeds import (
    auto_batch_axis,
    batch_axes_of,
    load_feeds,
    model_inputs,
    parse_batch_axes,
    validation_sample,
)


@pytest.mark.parametrize("shape,axis", [
    ((None, 3, 8, 8), 0),       # the usual dynamic batch
    ((2, None, 16), 1),         # recurrent state (layers, batch, hidden)
    ((None, None), 0),          # batch and sequence both symbolic: first axis
    ((1, None), 0),             # batch-1 export with a dynamic sequence: not the batch
    ((1, 3, 8, 8), 0),          # fully static
    ((), 0),
])
def test_auto_batch_axis(shape, axis):
    assert auto_batch_axis(shape) == axis


def test_minus1_and_zero_dims_are_symbolic():
    model = rw.conv_net(batch_dim=-1)
    assert model_inputs(model)[0].shape == (None, 3, 8, 8)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    assert model_inputs(model)[0].shape == (None, 3, 8, 8)
    shapes = {i.name: i.shape for i in model_inputs(model)}
    assert fixed_batch_size(shapes) is None  # not a fixed batch of -1 or 0


def test_state_input_batches_slice_axis_1():
    inputs = model_inputs(rw.state_model())
    assert batch_axes_of(inputs) == {"x": 0, "h0": 1}
    data = rw.state_data(n=7)
    feeds = load_feeds(data, inputs)
    batches = [b.feeds for b in iter_batches(feeds, None, 3, axes=batch_axes_of(inputs))]
    assert [b["h0"].shape for b in batches] == [(2, 3, 16), (2, 3, 16), (2, 1, 16)]
    assert np.array_equal(np.concatenate([b["h0"] for b in batches], axis=1), data["h0"])
    assert np.array_equal(np.concatenate([b["x"] for b in batches], axis=0), data["x"])


def test_explicit_axis_overrides_and_is_checked():
    model = rw.state_model()
    inputs = model_inputs(model, {"h0": -2})
    assert batch_axes_of(inputs)["h0"] == 1
    with pytest.raises(CalibrationError, match="different sample counts"):
        load_feeds(rw.state_data(), model_inputs(model, {"h0": 0}))
    with pytest.raises(CalibrationError, match=r"unknown input\(s\) \['h1'\]"):
        model_inputs(model, {"h1": 1})
    with pytest.raises(CalibrationError, match=r"use an integer in \[-3, 2\]"):
        model_inputs(model, {"h0": 3})


def test_wrong_shape_names_the_axis_and_where_samples_are():
    data = rw.state_data()
    data["h0"] = data["h0"][:, :, :8]
    with pytest.raises(CalibrationError, match=r"axis 2 must be 16 \(samples on axis 1\)"):
        load_feeds(data, model_inputs(rw.state_model()))


@pytest.mark.parametrize("items,expected", [
    (["h0=1"], {"h0": 1}), (["h0=1", "x=0"], {"h0": 1, "x": 0}), (["a=b=-1"], {"a=b": -1}),
])
def test_parse_batch_axes(items, expected):
    assert parse_batch_axes(items) == expected


@pytest.mark.parametrize("item", ["h0", "=1", "h0=one", "h0="])
def test_parse_batch_axes_refuses(item):
    with pytest.raises(ValueError, match="use INPUT=AXIS"):
        parse_batch_axes([item])


def test_bool_input_takes_bool_data():
    model = rw.conv_net()
    model.graph.input.append(onnx.helper.make_tensor_value_info("flag", onnx.TensorProto.BOOL,
                                                                ["N"]))
    feeds = load_feeds({"input": rw.images(4), "flag": np.ones(4, bool)}, model_inputs(model))
    assert feeds["flag"].dtype == np.bool_


def test_validation_sample_is_one_model_sized_batch():
    state = model_inputs(rw.state_model())
    sample = validation_sample(rw.state_data(), state)
    assert sample["h0"].shape == (2, 1, 16) and sample["x"].shape == (1, 16)
    fixed4 = model_inputs(rw.conv_net(batch_dim=4))
    assert validation_sample({"input": rw.images(10)}, fixed4)["input"].shape == (4, 3, 8, 8)
    zeros = np.zeros((4, 3, 8, 8), np.float32)  # otherwise zeros of the float model's inputs
    assert np.array_equal(validation_sample({"input": rw.images(3)}, fixed4)["input"], zeros)
    assert np.array_equal(validation_sample([{"input": rw.images(3)}], fixed4)["input"], zeros)
    assert validation_sample(None, state)["h0"].shape == (2, 1, 16)


def test_saved_model_is_run_on_the_calibration_sample(monkeypatch, tmp_path):
    import importlib

    from edgequant.ptq.quantizer import quantize

    export = importlib.import_module("edgequant.export")  # export() validates, then saves

    seen = []
    real = export.validate_onnx
    monkeypatch.setattr(export, "validate_onnx",
                        lambda m, sample=None, what="": (seen.append(sample), real(m, sample))[1])
    data = rw.state_data()
    quantize(rw.state_model(), "w8a8", data, check_speed=False).save(tmp_path / "q.onnx")
    (sample,) = seen
    assert np.array_equal(sample["h0"], data["h0"][:, :1])


def test_scalar_input_takes_one_value_for_every_sample():
    """A rank-0 input (a sample rate) is fed as is to every batch; a per-sample array is refused."""
    from edgequant.errors import CalibrationError
    from edgequant.runtime.feeds import load_feeds, model_inputs
    from edgequant_zoo.realworld import vad_lstm

    case = vad_lstm()
    inputs = model_inputs(case.model, {"h0": 1, "c0": 1})
    sr = next(i for i in inputs if i.name == "sr")
    assert sr.scalar
    feeds = load_feeds(case.feeds, inputs)
    batches = [b.feeds for b in iter_batches(feeds, None, 8, axes={i.name: i.batch_axis for i in inputs})]
    assert len(batches) == 4 and all(b["sr"].shape == () and int(b["sr"]) == 16000 for b in batches)
    assert batches[0]["h0"].shape == (1, 8, 32)
    with pytest.raises(CalibrationError, match="scalar"):
        load_feeds({**case.feeds, "sr": np.full(32, 16000)}, inputs)


def test_verify_slices_samples_on_each_inputs_batch_axis(tmp_path):
    """verify runs a state-input model (h0/c0 batch on axis 1) sample-consistently: the
    interpreter and onnxruntime see the same per-batch slices, integer outputs at 0 LSB, and
    an explicit axis that contradicts the data is refused."""
    import edgequant as eq
    from edgequant_zoo.realworld import vad_lstm

    case = vad_lstm()
    axes = {"h0": 1, "c0": 1}
    qm = eq.quantize(case.model, "w8a8", calibration=case.feeds, batch_axes=axes)
    path = qm.save(tmp_path / "vad.onnx")
    report = eq.verify(str(path), case.feeds, batch_size=8, isolate_integer=True)  # auto axes
    assert report.samples == 32
    assert report.max_lsb == 0, report.to_dict()
    explicit = eq.verify(str(path), case.feeds, batch_size=8, isolate_integer=True,
                         batch_axes=axes)
    assert explicit.samples == 32 and explicit.max_lsb == 0
    with pytest.raises(ValueError):
        eq.verify(str(path), case.feeds, batch_size=8, batch_axes={"h0": 0, "c0": 0})
