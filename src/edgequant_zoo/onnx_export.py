"""Export zoo models from PyTorch to float ONNX at opset 21, quietly and atomically.

Opset 21 is what edgequant's QDQ contract needs (int4 / int16 QuantizeLinear, blocked
quantization); the dynamo exporter emits it directly, and the version converter is kept
as a fallback for exporters that stop short of it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import onnx

from edgequant.outputs import atomic_write

__all__ = ["ONNX_OPSET", "export_onnx"]

log = logging.getLogger(__name__)

ONNX_OPSET = 21


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[io.StringIO]:
    """Silence the exporter's progress prints, warnings and torch-internal log lines.

    Library code must not print; what the exporter said is logged at DEBUG instead.
    """
    chatter = io.StringIO()
    torch_onnx_log = logging.getLogger("torch.onnx")
    old_level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            yield chatter
    finally:
        torch_onnx_log.setLevel(old_level)
        if chatter.getvalue().strip():
            log.debug("torch.onnx.export said:\n%s", chatter.getvalue())


def export_onnx(
    module,
    path: str | os.PathLike[str],
    example,
    *,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("logits",),
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """Export ``module`` (put in eval mode) to a float ONNX file at opset 21 and return its path.

    ``example`` is one tensor or a tuple of tensors, one per name in ``input_names``.
    ``dynamic_axes`` maps input name → {axis: dim name}; by default axis 0 of every input is
    the dynamic ``batch`` dimension. The file is written to a temporary name and renamed, so a
    failed export never leaves a half-written model behind.
    """
    import torch

    examples = example if isinstance(example, tuple) else (example,)
    if len(examples) != len(input_names):
        raise ValueError(
            f"export_onnx: {len(examples)} example tensors for inputs {list(input_names)}; "
            "give exactly one example per input name"
        )
    if dynamic_axes is None:
        dynamic_axes = {name: {0: "batch"} for name in input_names}
    unknown = sorted(set(dynamic_axes) - set(input_names))
    if unknown:
        raise ValueError(f"dynamic_axes names {unknown} are not inputs; allowed: {list(input_names)}")
    # One torch Dim per distinct axis name, so inputs sharing "batch" share one symbol.
    dims: dict[str, object] = {}
    dynamic_shapes = tuple(
        {
            axis: dims.setdefault(dim_name, torch.export.Dim(dim_name))
            for axis, dim_name in dynamic_axes.get(name, {}).items()
        }
        for name in input_names
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)

    def _write(tmp_name: str) -> None:
        tmp = Path(tmp_name)
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                module.eval(),
                examples,
                dynamo=True,
                opset_version=ONNX_OPSET,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=dynamic_shapes,
                verbose=False,
                report=False,
            )
            program.save(tmp)
        model = onnx.load(tmp)
        if _default_opset(model) != ONNX_OPSET:
            # Fallback for exporters that cannot target 21 directly.
            model = onnx.version_converter.convert_version(model, ONNX_OPSET)
            onnx.save(model, tmp)

    atomic_write(out, _write)
    log.info("exported %s to %s (opset %d)", type(module).__name__, out, ONNX_OPSET)
    return out


def _default_opset(model: onnx.ModelProto) -> int:
    """The model's opset of the default ONNX domain (0 if missing)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
