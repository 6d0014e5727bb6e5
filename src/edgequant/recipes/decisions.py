"""The plan's plain data: one decision per node and per tensor, each with its mode and reason.

A ``QuantPlan`` is what ``edgequant.recipes.resolve`` returns and what the graph passes
execute: every node and tensor carries its own ``mode`` (static / dynamic / weight_only /
fp16), so one plan can mix precisions per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edgequant.recipes.recipe import Recipe
from edgequant.spec import QuantSpec

Action = Literal["quantize", "float", "fused", "share", "fp16"]


@dataclass(frozen=True)
class Choice:
    """A node's treatment after the rules: action, mode, specs and the rule that set them."""

    action: Literal["quantize", "float"]
    mode: str
    weights: QuantSpec | None
    activations: QuantSpec | None
    rule: str


@dataclass(frozen=True)
class NodeDecision:
    """What happens to one node, in which ``mode``, and why."""

    node: str
    op_type: str
    action: Literal["quantize", "float", "skip"]
    reason: str
    rule: str
    mode: str = ""


@dataclass(frozen=True)
class TensorDecision:
    """What happens to one tensor: quantized with ``spec``, fused, shared, kept float, fp16.

    ``mode`` is the treatment of the node(s) that decided it. A decision with ``consumers``
    is a *re-quantization at a precision seam*: only those consumer nodes read ``tensor``
    through it (its plan key is ``requant_key(tensor, consumers[0])``). ``from_dequantized``
    says the seam reads the producer's dequantized output (the tensor is an integer tensor
    in the deployed model) rather than the float tensor.
    """

    tensor: str
    role: Literal["activation", "weight", "bias", "constant"]
    action: Action
    spec: QuantSpec | None = None
    rule: str = ""
    reason: str = ""
    share_with: str = ""
    weight_of: str = ""   # bias: the weight tensor whose scale it multiplies
    input_of: str = ""    # bias: the activation decision (plan key) whose scale it multiplies
    mode: str = "static"
    consumers: tuple[str, ...] = ()
    from_dequantized: bool = False


def requant_key(tensor: str, consumer: str) -> str:
    """Plan key of ``tensor`` re-quantized for ``consumer`` (and others with the same spec)."""
    return f"{tensor}@{consumer}"


@dataclass(frozen=True)
class QuantPlan:
    """The resolved recipe: decisions per node (in graph order) and per tensor."""

    recipe: Recipe
    nodes: tuple[NodeDecision, ...]
    tensors: dict[str, TensorDecision] = field(default_factory=dict)
    unmatched_rules: tuple[str, ...] = ()
    io: str = "float"

    def float_nodes(self) -> list[NodeDecision]:
        """Nodes that compute on activations but stay in float, with reasons."""
        return [d for d in self.nodes if d.action == "float"]

    def quantized(self, role: str | None = None, mode: str | None = None) -> list[TensorDecision]:
        """Tensor decisions with action ``quantize`` (optionally of one role / one mode)."""
        return [t for t in self.tensors.values()
                if t.action == "quantize" and (role is None or t.role == role)
                and (mode is None or t.mode == mode)]

    def modes(self) -> set[str]:
        """The modes of the quantized nodes (and of fp16 tensors): what the passes must run."""
        found = {d.mode for d in self.nodes if d.action == "quantize"}
        return found | {t.mode for t in self.tensors.values() if t.action == "fp16"}

    def to_dict(self) -> dict:
        """JSON-able summary for reports."""
        from edgequant.recipes.recipe import spec_to_dict

        return {
            "recipe": self.recipe.name,
            "io": self.io,
            "nodes": [d.__dict__ for d in self.nodes],
            "tensors": {
                k: {**{f: (list(v) if isinstance(v, tuple) else v)
                       for f, v in t.__dict__.items() if f != "spec"},
                    "spec": spec_to_dict(t.spec) if t.spec else None}
                for k, t in self.tensors.items()
            },
            "unmatched_rules": list(self.unmatched_rules),
        }
