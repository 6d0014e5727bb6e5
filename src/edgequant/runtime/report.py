"""The one result of ``verify`` for ONNX and TFLite models alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgequant.runtime.diff import TensorDiff


@dataclass(frozen=True)
class VerifyReport:
    """Per-output (and optionally per-node) differences between a reference and one or more
    engines: one :class:`TensorDiff` per tensor and engine compared.

    ``engine`` names the runtime family (``onnxruntime`` or ``litert``), each diff's
    ``engine`` the exact path (``onnxruntime``, ``litert/builtin``, ``litert/xnnpack``);
    ``reference`` what they were compared with; ``requantization`` the reference's
    arithmetic; ``lowered`` whether a QDQ model was interpreted as the QOperator graph
    onnxruntime fuses it into.
    """

    outputs: list[TensorDiff]
    nodes: list[TensorDiff] = field(default_factory=list)
    engine: str = "onnxruntime"
    requantization: str = "float"
    lowered: bool = False
    reference: str = "interpreter"
    model: str = ""
    samples: int = 0
    boundaries: tuple[str, ...] = ()  # integer tensors the reference took from the engine
    #: integer tensors both engines compute from a float layer (e.g. an int4-weight Conv that
    #: onnxruntime runs as DQ → float Conv → Q) and that were *not* isolated: last-ulp float
    #: rounding differs there, so differences downstream need not be integer faults
    float_layers: tuple[str, ...] = ()

    @property
    def engines(self) -> list[str]:
        """Every engine path compared, in order of first appearance."""
        return list(dict.fromkeys(d.engine or self.engine for d in self.outputs))

    def ok(self, max_lsb: float = 0, float_atol: float | None = None) -> bool:
        """True when every LSB-measured output is within ``max_lsb`` (and every other float
        output within ``float_atol`` when given)."""
        for d in self.outputs:
            if d.in_lsb and d.max_diff > max_lsb:
                return False
            if not d.in_lsb and float_atol is not None and d.max_diff > float_atol:
                return False
        return True

    @property
    def max_lsb(self) -> float:
        """Largest LSB difference over the outputs measured in LSB (0 if none)."""
        return max((d.max_diff for d in self.outputs if d.in_lsb), default=0.0)

    def output(self, name: str, engine: str | None = None) -> TensorDiff:
        """The diff of output ``name`` (for ``engine`` when several were compared)."""
        for d in self.outputs:
            if d.name == name and (engine is None or d.engine == engine):
                return d
        have = sorted({(d.name, d.engine) for d in self.outputs})
        raise KeyError(f"no output {name!r} for engine {engine!r} in the report; have {have}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, the same keys for ONNX and TFLite models."""
        return {
            "model": self.model,
            "reference": self.reference,
            "engine": self.engine,
            "engines": self.engines,
            "requantization": self.requantization,
            "boundaries": list(self.boundaries),
            "float_layers": list(self.float_layers),
            "lowered": self.lowered,
            "samples": self.samples,
            "max_lsb": self.max_lsb,
            "outputs": [d.to_dict() for d in self.outputs],
            "nodes": [d.to_dict() for d in self.nodes],
        }
