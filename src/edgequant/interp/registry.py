"""Op registry of the reference interpreter: ``(domain, op_type) → function``.

Every op is a small function named exactly like the ONNX op. It receives a :class:`NodeContext`
(attributes, node name, requantization mode, compiled subgraphs) and the node's input arrays
(``None`` for an omitted optional input; then the values of ``ctx.captured``) and returns
one array or a tuple of arrays, one per node output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Requantization = Literal["float", "fixedpoint"]
DEFAULT_DOMAIN = ""
MS_DOMAIN = "com.microsoft"

OpFunction = Callable[..., np.ndarray | tuple[np.ndarray | None, ...]]

#: ``(domain, op_type) → op function``; filled by the ``@register`` decorators in ``ops/``.
OPS: dict[tuple[str, str], OpFunction] = {}


@dataclass(frozen=True)
class NodeContext:
    """What an op function may know about its node besides the input arrays."""

    name: str
    op_type: str
    attrs: dict[str, Any] = field(default_factory=dict)
    requantization: Requantization = "float"
    n_outputs: int = 1
    opset: int = 21  # opset version the model imports for the node's domain
    #: graph attributes compiled to runners (``interpreter.Subgraph``): ``If`` / ``Loop`` / ``Scan``
    subgraphs: dict[str, Any] = field(default_factory=dict)
    #: outer-scope tensors the subgraphs read, passed after the node's own inputs
    captured: tuple[str, ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        """Attribute ``key`` of the node, or ``default`` when absent."""
        return self.attrs.get(key, default)


def register(domain: str = DEFAULT_DOMAIN) -> Callable[[OpFunction], OpFunction]:
    """Register the decorated function under ``(domain, function.__name__)``."""

    def wrap(fn: OpFunction) -> OpFunction:
        key = (domain, fn.__name__)
        assert key not in OPS, f"op {key} registered twice"
        OPS[key] = fn
        return fn

    return wrap


def normalize_domain(domain: str) -> str:
    """``ai.onnx`` and the empty string both name the default ONNX domain."""
    return DEFAULT_DOMAIN if domain in ("", "ai.onnx") else domain
