"""nn.Module → ONNX (opset 21, dynamic batch dimension).

The dynamo exporter (``torch.export``) is used first: it refuses data-dependent control flow
instead of silently baking one branch in. Only when it fails is the TorchScript exporter tried
(with a logged warning), and there tracer warnings — the sign of a trace that would not
generalise — are turned into errors for the same reason.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from edgequant.errors import EdgequantError
from edgequant.graph.io import save_model

log = logging.getLogger(__name__)

#: The QDQ contract's opset (int4 / int16 Q/DQ need 21).
OPSET = 21


class TorchExportError(EdgequantError, ValueError):
    """An ``nn.Module`` cannot be exported to ONNX."""


def as_tuple(example_inputs) -> tuple:
    """Example inputs as a tuple of positional arguments."""
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def _reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _batch2(args: tuple) -> tuple:
    # torch.export specialises a dimension whose example size is 1, so export with batch >= 2.
    return tuple(
        torch.cat([a, a], 0) if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] == 1 else a
        for a in args
    )


def _dynamo(module: nn.Module, args: tuple, optimize: bool = True) -> onnx.ModelProto:
    batch = torch.export.Dim("batch")
    shapes = tuple({0: batch} if isinstance(a, torch.Tensor) and a.ndim else None for a in args)
    prog = torch.onnx.export(
        module, args, dynamo=True, dynamic_shapes=shapes, opset_version=OPSET, verbose=False,
        optimize=optimize,
    )
    return prog.model_proto


def _torchscript(module: nn.Module, args: tuple) -> onnx.ModelProto:
    names = [f"input_{i}" for i in range(len(args))]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        torch.onnx.export(
            module, args, buf, dynamo=False, opset_version=20, input_names=names,
            dynamic_axes={n: {0: "batch"} for n in names},
        )
    model = onnx.load_from_string(buf.getvalue())
    return onnx.version_converter.convert_version(model, OPSET)


def export_onnx(module: nn.Module, example_inputs, path: str | os.PathLike | None = None,
                optimize: bool = True) -> onnx.ModelProto:
    """Export ``module`` (in eval mode) to an opset-21 ONNX model with a dynamic batch axis.

    ``example_inputs`` is a tensor or a tuple of positional tensors. When ``path`` is given the
    model is also written there (atomically). ``optimize=False`` skips the exporter's graph
    rewrites (which may, e.g., fold a BatchNorm into a Conv *under the Conv's weight name*).
    Raises :class:`TorchExportError` naming the module
    class and the exporter's reason when neither exporter can handle the module.
    """
    args = _batch2(as_tuple(example_inputs))
    was_training = module.training
    module.eval()
    try:
        try:
            model = _dynamo(module, args, optimize)
        except Exception as exc:  # the dynamo exporter raises many unrelated types
            reason = _reason(exc)
            log.warning("dynamo ONNX export of %s failed (%s); falling back to the TorchScript "
                        "exporter", type(module).__name__, reason)
            try:
                model = _torchscript(module, args)
            except Exception as exc2:
                raise TorchExportError(
                    f"{type(module).__name__} cannot be exported to ONNX: dynamo: {reason}; "
                    f"torchscript: {_reason(exc2)}"
                ) from exc2
    finally:
        module.train(was_training)
    if path is not None:
        save_atomic(model, Path(path))
    return model


def save_atomic(model: onnx.ModelProto, path: Path) -> None:
    """Check ``model`` (ONNX checker + one onnxruntime run), then write it to ``path`` via a
    temp file + rename (never a half-written file)."""
    from edgequant.export.validate import validate_onnx

    validate_onnx(model, what=f"the exported model for {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path)
