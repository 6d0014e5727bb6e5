"""export_onnx: opset 21, named I/O, dynamic batch, and ONNX Runtime output equal to PyTorch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgequant_zoo.convnets import MobileNetLike, VGGNet, build_seeded
from edgequant_zoo.onnx_export import ONNX_OPSET, export_onnx
from edgequant_zoo.tutorial_cnn import TutorialCNN

# Same float32 maths in two runtimes; only summation order differs (≈ 1e-7 relative
# per op, and these logits are O(1)).
EXPORT_ATOL = 1e-5
# The BatchNorm convnets chain ~20 layers: rounding differences grow to a few 1e-6
# relative on logits of size up to ~10.
DEEP_EXPORT_RTOL = 1e-5


def _run(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    # Non-trivial BatchNorm statistics, so export must carry running mean/var, not 0/1.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_tutorial_cnn_export_matches_torch(tmp_path):
    model = build_seeded(TutorialCNN).eval()
    path = export_onnx(model, tmp_path / "cnn.onnx", torch.zeros(1, 1, 28, 28))
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == ONNX_OPSET
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)  # not the export batch
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(path, x), expected, rtol=0, atol=EXPORT_ATOL)
    assert not list(tmp_path.glob("tmp*"))  # atomic write left no temp file


@pytest.mark.parametrize("cls", [VGGNet, MobileNetLike])
def test_convnet_export_matches_torch(tmp_path, cls):
    model = _trained_like(build_seeded(cls))
    path = export_onnx(model, tmp_path / "net.onnx", torch.zeros(1, 1, 28, 28))
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Conv", "Gemm"} <= ops or {"Conv", "MatMul"} <= ops
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(path, x), expected, rtol=DEEP_EXPORT_RTOL, atol=EXPORT_ATOL)


def test_export_rejects_mismatched_examples(tmp_path):
    with pytest.raises(ValueError, match="one example per input"):
        export_onnx(TutorialCNN(), tmp_path / "x.onnx", (torch.zeros(1, 1, 28, 28),) * 2)
