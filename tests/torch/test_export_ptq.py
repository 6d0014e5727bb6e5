"""export_onnx and edgequant.torch.quantize (PTQ of an nn.Module) against onnxruntime / PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch_models import run_ort, tiny_cnn

import edgequant
from edgequant.errors import CalibrationError, EdgequantError
from edgequant.torch import TorchExportError, calibration_feeds, export_onnx
from edgequant.torch import quantize as torch_quantize

#: Float32 results of the same ops in PyTorch and onnxruntime differ by accumulation order only.
FLOAT_TOL = 1e-5


class DataDependent(nn.Module):
    """Control flow on tensor values: no exporter can turn this into a static graph."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


def test_export_matches_torch_and_batch_is_dynamic(images):
    model = tiny_cnn().eval()
    onnx_model = export_onnx(model, images[:1])
    assert onnx_model.opset_import[0].version == 21
    with torch.no_grad():
        want = model(images).numpy()
    np.testing.assert_allclose(run_ort(onnx_model, images.numpy()), want, rtol=FLOAT_TOL,
                               atol=FLOAT_TOL)
    assert model.training is False


def test_unexportable_module_names_class_and_reason(images):
    with pytest.raises(TorchExportError) as exc:
        export_onnx(DataDependent(), images[:2])
    msg = str(exc.value)
    assert "DataDependent" in msg and "cannot be exported" in msg and "\n" not in msg
    assert isinstance(exc.value, EdgequantError)


def test_torch_quantize_equals_export_then_quantize(images):
    model = tiny_cnn().eval()
    calib = images.numpy()
    ours = torch_quantize(model, images[:2], "w8a8", calibration=[images[:16], images[16:]])
    onnx_model = export_onnx(model, images[:2])
    ref = edgequant.quantize(onnx_model, "w8a8",
                             calibration={onnx_model.graph.input[0].name: calib})
    assert set(ours.qparams) == set(ref.qparams)
    assert all(ours.qparams[k] == ref.qparams[k] for k in ref.qparams)
    np.testing.assert_array_equal(run_ort(ours.model, calib), run_ort(ref.model, calib))


def test_calibration_forms_agree(images):
    names, shapes = ["x"], [(1, 8, 8)]
    y = torch.zeros(len(images), dtype=torch.long)
    loader = DataLoader(TensorDataset(images, y), batch_size=10)
    want = images.numpy()
    for source in (loader, [images[:5], images[5:]], [images.numpy()], {"x": want},
                   [(images, y)]):
        np.testing.assert_array_equal(calibration_feeds(source, names, shapes)["x"], want)


def test_wrong_calibration_shape_names_input_and_shapes(images):
    with pytest.raises(CalibrationError, match=r"'x'.*\(4, 1, 9, 9\).*\(N, 1, 8, 8\)"):
        calibration_feeds([torch.zeros(4, 1, 9, 9)], ["x"], [(1, 8, 8)])


def test_torch_quantize_wrong_shape_calibration(images):
    with pytest.raises(CalibrationError, match="expected"):
        torch_quantize(tiny_cnn(), images[:2], "w8a8", calibration=[torch.zeros(3, 2, 8, 8)])


def test_torchscript_fallback_is_logged(images, monkeypatch, caplog):
    import edgequant.torch.export as export_mod

    def broken(module, args, optimize=True):
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(export_mod, "_dynamo", broken)
    model = tiny_cnn().eval()
    with caplog.at_level("WARNING", logger="edgequant.torch.export"):
        onnx_model = export_onnx(model, images[:2])
    assert "falling back to the TorchScript exporter" in caplog.text
    assert "simulated dynamo failure" in caplog.text
    assert onnx_model.opset_import[0].version == 21
    with torch.no_grad():
        want = model(images).numpy()
    np.testing.assert_allclose(run_ort(onnx_model, images.numpy()), want, rtol=FLOAT_TOL,
                               atol=FLOAT_TOL)
