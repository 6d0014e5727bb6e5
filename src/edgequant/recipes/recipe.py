"""Recipes are data: frozen ``Rule`` / ``Recipe`` dataclasses that round-trip to JSON.

A recipe gives the default treatment (``mode``, weight and activation ``QuantSpec``) and an
ordered list of rules. Rules match nodes by op type and/or node-name glob; for each node
the last matching rule wins. A rule either keeps the node in float or overrides its
treatment: its ``mode`` (static / dynamic / weight_only / fp16) and its specs, so one
recipe can mix precisions per layer::

    Recipe("mixed", "static", weights=int8_per_channel, activations=uint8, rules=(
        Rule(nodes=("conv2",), activations=QuantSpec(QType(16, True), symmetric=True)),
        Rule(nodes=("conv3",), mode="fp16"),
        Rule(nodes=("conv4",), action="float"),
        Rule(nodes=("fc1",), mode="weight_only", weights=int4_groups_of_128)))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from edgequant.errors import RecipeError
from edgequant.graph.contract import NODE_MODES
from edgequant.spec import PerChannel, PerGroup, PerTensor, QType, QuantSpec

SCHEMA_VERSION = 1

Mode = Literal["none", "fp16", "dynamic", "static", "weight_only"]
MODES = ("none", *NODE_MODES)
#: Modes that quantize weights (a weights spec is needed) / calibrate activations.
WEIGHT_MODES = ("dynamic", "static", "weight_only")


@dataclass(frozen=True)
class Rule:
    """Match nodes and decide their treatment; empty ``op_types``/``nodes`` match everything.

    ``action="float"`` keeps matched nodes in float (the QuantStub/DeQuantStub boundary);
    ``action="quantize"`` quantizes them, with ``mode`` (default: the recipe's) and
    ``weights``/``activations`` overriding the recipe's when given. A Relu / Clip fused into
    a producer that a rule decided follows that producer unless a rule matches it too.
    """

    op_types: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    action: Literal["quantize", "float"] = "quantize"
    weights: QuantSpec | None = None
    activations: QuantSpec | None = None
    name: str = ""
    mode: Mode | None = None

    def __post_init__(self) -> None:
        if self.action not in ("quantize", "float"):
            raise RecipeError(f"rule action {self.action!r} is not allowed: use quantize or float")
        if self.mode is not None and self.mode not in MODES:
            raise RecipeError(f"rule {self.label}: mode {self.mode!r} is not allowed: use one of "
                              f"{MODES} (or leave it out for the recipe's mode)")
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "nodes", tuple(self.nodes))

    @property
    def label(self) -> str:
        """A readable identifier for reports."""
        if self.name:
            return self.name
        parts = [f"op_types={list(self.op_types)}"] if self.op_types else []
        parts += [f"nodes={list(self.nodes)}"] if self.nodes else []
        what = self.mode if self.action == "quantize" and self.mode else self.action
        return f"{what}({', '.join(parts) or 'all'})"


@dataclass(frozen=True)
class Recipe:
    """A named quantization recipe: mode, default specs and ordered rules.

    ``weights`` granularity axes are symbolic: ``PerChannel`` means "the op's output-channel
    axis" and ``PerGroup`` "blocks along the op's input axis"; they are resolved per node.
    """

    name: str
    mode: Mode
    weights: QuantSpec | None = None
    activations: QuantSpec | None = None
    rules: tuple[Rule, ...] = ()
    schema_version: int = SCHEMA_VERSION
    description: str = ""
    extra: tuple[tuple[str, Any], ...] = field(default=())
    #: algorithm switches, ``(name, value)`` pairs checked against ``recipes.options.OPTIONS``
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        from edgequant.recipes.options import check_options

        pairs = self.options.items() if isinstance(self.options, dict) else self.options
        object.__setattr__(self, "options", check_options(tuple(pairs), f"recipe {self.name!r}"))
        if self.mode not in MODES:
            raise RecipeError(f"recipe mode {self.mode!r} is not allowed: use one of {MODES}")
        if self.schema_version != SCHEMA_VERSION:
            raise RecipeError(
                f"recipe schema_version {self.schema_version} is not supported "
                f"(this edgequant reads version {SCHEMA_VERSION})"
            )
        object.__setattr__(self, "rules", tuple(self.rules))
        if self.mode in ("dynamic", "static", "weight_only") and self.weights is None:
            raise RecipeError(f"recipe {self.name!r}: mode {self.mode} needs a weights spec")
        if self.mode == "static" and self.activations is None:
            raise RecipeError(f"recipe {self.name!r}: mode static needs an activations spec")
        for rule in self.rules:
            if rule.action != "quantize":
                continue
            mode = rule.mode or self.mode
            if mode in WEIGHT_MODES and (rule.weights or self.weights) is None:
                raise RecipeError(f"recipe {self.name!r}, rule {rule.label}: mode {mode} needs "
                                  "a weights spec (in the rule or the recipe)")
            if mode == "static" and (rule.activations or self.activations) is None:
                raise RecipeError(f"recipe {self.name!r}, rule {rule.label}: mode static needs "
                                  "an activations spec (in the rule or the recipe)")

    def with_rules(self, *rules: Rule) -> Recipe:
        """A copy with ``rules`` appended (they win over earlier ones)."""
        from dataclasses import replace

        return replace(self, rules=(*self.rules, *rules))

    def with_options(self, **values: Any) -> Recipe:
        """A copy with options set (checked against ``recipes.options.OPTIONS``)."""
        from dataclasses import replace

        return replace(self, options=tuple({**dict(self.options), **values}.items()))

    def to_json(self) -> str:
        """Serialise to JSON (stable key order)."""
        return json.dumps(_recipe_to_dict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        """Parse JSON written by :meth:`to_json`; unknown keys are rejected."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecipeError(f"recipe JSON is not valid JSON: {exc}") from exc
        return _recipe_from_dict(data)


# --- JSON (de)serialisation -------------------------------------------------------------

def spec_to_dict(spec: QuantSpec) -> dict:
    """QuantSpec → JSON-able dict."""
    g = spec.granularity
    if isinstance(g, PerTensor):
        gd: dict = {"kind": "per_tensor"}
    elif isinstance(g, PerChannel):
        gd = {"kind": "per_channel", "axis": g.axis}
    else:
        gd = {"kind": "per_group", "axis": g.axis, "size": g.size}
    return {
        "qtype": spec.qtype.name,
        "granularity": gd,
        "symmetric": spec.symmetric,
        "rounding": spec.rounding,
        "observer": spec.observer,
        "observer_args": dict(spec.observer_args),
    }


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    if not isinstance(d, dict):
        raise RecipeError(f"{where} must be a JSON object, got {type(d).__name__}")
    unknown = set(d) - allowed
    if unknown:
        raise RecipeError(f"{where} has unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def spec_from_dict(d: dict, where: str = "spec") -> QuantSpec:
    """JSON dict → QuantSpec (unknown keys rejected)."""
    _check_keys(d, {"qtype", "granularity", "symmetric", "rounding", "observer",
                    "observer_args"}, where)
    g = d.get("granularity", {"kind": "per_tensor"})
    _check_keys(g, {"kind", "axis", "size"}, f"{where}.granularity")
    kind = g.get("kind")
    if kind == "per_tensor":
        gran: PerTensor | PerChannel | PerGroup = PerTensor()
    elif kind == "per_channel":
        gran = PerChannel(int(g.get("axis", 0)))
    elif kind == "per_group":
        gran = PerGroup(int(g.get("axis", 0)), int(g["size"]))
    else:
        raise RecipeError(f"{where}.granularity.kind {kind!r} is not allowed: "
                          "use per_tensor, per_channel or per_group")
    try:
        return QuantSpec(
            qtype=QType.parse(d.get("qtype", "int8")),
            granularity=gran,
            symmetric=bool(d.get("symmetric", False)),
            rounding=d.get("rounding", "half_even"),
            observer=d.get("observer", "minmax"),
            observer_args=tuple(sorted(d.get("observer_args", {}).items())),
        )
    except ValueError as exc:
        raise RecipeError(f"{where}: {exc}") from exc


def _recipe_to_dict(r: Recipe) -> dict:
    return {
        "schema_version": r.schema_version,
        "name": r.name,
        "mode": r.mode,
        "description": r.description,
        "weights": spec_to_dict(r.weights) if r.weights else None,
        "activations": spec_to_dict(r.activations) if r.activations else None,
        "rules": [
            {
                "op_types": list(rule.op_types),
                "nodes": list(rule.nodes),
                "action": rule.action,
                "weights": spec_to_dict(rule.weights) if rule.weights else None,
                "activations": spec_to_dict(rule.activations) if rule.activations else None,
                "name": rule.name,
                "mode": rule.mode,
            }
            for rule in r.rules
        ],
        "extra": dict(r.extra),
        "options": dict(r.options),
    }


def _recipe_from_dict(d: dict) -> Recipe:
    _check_keys(d, {f.name for f in fields(Recipe)}, "recipe")
    if "name" not in d or "mode" not in d:
        raise RecipeError("recipe needs 'name' and 'mode'")
    rules = []
    for i, rd in enumerate(d.get("rules", [])):
        _check_keys(rd, {f.name for f in fields(Rule)}, f"recipe.rules[{i}]")
        rules.append(Rule(
            op_types=tuple(rd.get("op_types", ())),
            nodes=tuple(rd.get("nodes", ())),
            action=rd.get("action", "quantize"),
            weights=spec_from_dict(rd["weights"], f"rules[{i}].weights") if rd.get("weights")
            else None,
            activations=spec_from_dict(rd["activations"], f"rules[{i}].activations")
            if rd.get("activations") else None,
            name=rd.get("name", ""),
            mode=rd.get("mode"),
        ))
    return Recipe(
        name=d["name"],
        mode=d["mode"],
        weights=spec_from_dict(d["weights"], "weights") if d.get("weights") else None,
        activations=spec_from_dict(d["activations"], "activations") if d.get("activations")
        else None,
        rules=tuple(rules),
        schema_version=d.get("schema_version", SCHEMA_VERSION),
        description=d.get("description", ""),
        extra=tuple(sorted(d.get("extra", {}).items())),
        options=tuple(sorted(d.get("options", {}).items())),
    )
